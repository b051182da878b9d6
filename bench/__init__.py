"""Benchmarks (not tests): `python bench/run_all.py`; see bench/README.md."""
