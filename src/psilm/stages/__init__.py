"""The pipeline's stages, one module each: a settings model at the top, plain functions below.

A stage takes plain data in and returns plain data; only pipeline.py (with rounds.py, its
self-evolution rounds) and store.py touch the run folder.
"""
