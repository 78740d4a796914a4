"""The pipeline's stages: one object each (base.Stage) with its settings beside it; the work
itself is plain functions of data. Only the run machinery (psilm.run) touches the run folder."""
