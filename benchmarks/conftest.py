import os

# One thread for NumPy's BLAS (as `python -m bench` does, bench/__main__.py: no number of the benchmark
# uses BLAS) and, unless OMP_NUM_THREADS says otherwise, for torch: on a machine shared with other jobs
# more threads than free cores make times erratic (docs/performance.md). Set before NumPy and torch load.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import importlib.metadata  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bench.anymdp.sampler import sample_task  # noqa: E402
from bench.anymdp.task import Task  # noqa: E402
from benchmarks.scale import SCALE  # noqa: E402

STARTED, LOAD_AT_START = time.time(), os.getloadavg()


def pytest_benchmark_update_machine_info(config, machine_info: dict) -> None:
    """What else the numbers depend on, saved with the run (`--benchmark-json`, `--benchmark-autosave`);
    `--benchmark-compare` warns when it differs from the compared run's."""
    try:
        xenoverse = importlib.metadata.version("xenoverse")
    except importlib.metadata.PackageNotFoundError:
        xenoverse = None
    machine_info.update(
        scale=SCALE.name,
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        numpy=np.__version__,
        xenoverse=xenoverse,
        openblas_threads=os.environ["OPENBLAS_NUM_THREADS"],
    )


def pytest_benchmark_update_json(config, benchmarks, output_json: dict) -> None:
    """How busy the machine was and how long the whole run took (set-up and warm-up included)."""
    output_json["run_info"] = {
        "load_average_at_start": LOAD_AT_START,
        "load_average_at_end": os.getloadavg(),
        "wall_s": time.time() - STARTED,
    }


@pytest.fixture(scope="session")
def env_tasks() -> list[Task]:
    """`SCALE.env_tasks` AnyMDP tasks of `SCALE.env_ns` states, seeds 0, 1, ...: stepped by the envs,
    synthesized into DPD sequences and labelled by the solvers."""
    return [sample_task(SCALE.env_ns, seed=seed) for seed in range(SCALE.env_tasks)]
