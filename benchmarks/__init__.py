"""Benchmark harness of the index job: `python -m benchmarks.run` (see docs/benchmarks.md)."""
