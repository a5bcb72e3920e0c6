"""RAW test-set builders, scoring with pyiqa, tables and HTML reports: python -m benchmarks (see docs/benchmarks.md)."""
