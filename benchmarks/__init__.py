"""The speed suite: pytest-benchmark files, run by `make bench`, reported in docs/performance.md.

`python -m pytest benchmarks --benchmark-enable` times every benchmark (pyproject's addopts disable
timing by default); with `BENCH_SCALE=smoke` each runs once on tiny inputs (tests/test_benchmarks.py).
`python -m benchmarks.doc RUN.json` writes docs/performance.md from a run saved with `--benchmark-json`.
"""
