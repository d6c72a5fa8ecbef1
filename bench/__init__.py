"""Benchmarks (not tests): run them as modules, e.g. ``python -m bench.throughput``. They never assert on numbers."""
