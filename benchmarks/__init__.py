"""Benchmarks for robot-runtime; `python -m benchmarks.run` regenerates docs/benchmarks.md."""
