"""The pipeline's stages, one module each: a settings model at the top, plain functions below.

A stage takes plain data in and returns plain data; only the steps around them (steps.py, and
rounds.py for the self-evolution rounds) and store.py touch the run folder.
"""
