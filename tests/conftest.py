import os

# As `python -m bench` does (bench/__main__.py), for speed only: no result depends on it
# (tests/test_machine_independence.py runs without it).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
