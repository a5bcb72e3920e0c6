"""Scoring: metrics (:mod:`.metrics`), offline weights (:mod:`.weights`), pairing (:mod:`.pairing`) and the
``score`` entry point (:mod:`.score`). pyiqa is imported only when a metric is built. See ``docs/benchmarks.md``."""
