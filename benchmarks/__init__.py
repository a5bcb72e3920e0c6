"""Benchmark builders, scoring harness and performance benchmarks (built in later issues; see docs/)."""
