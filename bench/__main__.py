import os
import sys

# NumPy's BLAS threads fight the work of small per-task linear algebra (task sampling, solvers)
# on small machines; one thread was 5-20x faster there (docs/performance.md). Set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bench.cli import main  # noqa: E402

sys.exit(main())
