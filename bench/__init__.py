"""Benchmarks (run as modules: `python -m bench.storage`); speed targets live here, never in tests."""
