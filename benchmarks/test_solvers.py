"""The exact solvers (`bench.anymdp.solvers`), batched over tasks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bench.anymdp.sampler import sample_task
from bench.anymdp.solvers import (
    LABEL_GAMMA,
    TaskArrays,
    backward_induction,
    oracle_returns,
    random_returns,
    value_iteration,
)
from benchmarks.record import record
from benchmarks.scale import SCALE

SOLVERS: dict[str, tuple[Callable[[TaskArrays], np.ndarray], int]] = {
    f"value_iteration (gamma {LABEL_GAMMA})": (lambda arrays: value_iteration(arrays, LABEL_GAMMA), SCALE.solver_tasks),
    "oracle_returns (backward induction)": (oracle_returns, SCALE.solver_tasks),
    "random_returns (forward propagation)": (random_returns, SCALE.solver_tasks),
    "backward_induction (full Q)": (backward_induction, SCALE.backward_tasks),
}
"""name -> (solver, tasks it solves at once)."""


@pytest.fixture(scope="module")
def distinct_tasks() -> list:
    return [sample_task(SCALE.solver_ns, seed=seed) for seed in range(SCALE.solver_distinct)]


@pytest.mark.parametrize("name", SOLVERS)
def test_solver(benchmark, distinct_tasks: list, name: str) -> None:
    solve, n_tasks = SOLVERS[name]
    arrays = TaskArrays.stack([distinct_tasks[i % len(distinct_tasks)] for i in range(n_tasks)])
    setting = f"{n_tasks} tasks ({len(distinct_tasks)} distinct), H <= {arrays.horizon.max()}"
    record(benchmark, "solvers", f"ns {SCALE.solver_ns}", name, setting, {"tasks": n_tasks})
    benchmark.pedantic(solve, args=(arrays,), rounds=SCALE.rounds, warmup_rounds=SCALE.warmup)
