import os

# As `python -m bench` does (bench/__main__.py): one BLAS thread for NumPy's small linear algebra.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
