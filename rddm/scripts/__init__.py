"""Measurement scripts (run with ``python -m rddm.scripts.NAME``). See ``docs/training.md``."""
