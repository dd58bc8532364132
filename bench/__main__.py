import os
import sys

# Speed only (the benchmark's numbers use no BLAS, docs/anymdp.md): BLAS threads of NumPy fight the
# other work on small machines (docs/performance.md). Set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bench.cli import main  # noqa: E402

sys.exit(main())
