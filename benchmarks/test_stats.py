"""The leaderboard's statistics (`bench.report.stats`) on a tiny-sized score matrix: 3 runs x 192 tasks,
`SCALE.stats_reps` resamples, as one leaderboard row or pair needs them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bench.report import stats
from benchmarks.record import record
from benchmarks.scale import SCALE

RUNS, TASKS = 3, 192
TAUS = np.linspace(-1.0, 1.0, 101)


def scores(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.3, size=(RUNS, TASKS))


ESTIMATES: dict[str, Callable[[np.ndarray, np.ndarray, int], object]] = {
    "IQM interval, runs (rliable)": lambda a, b, reps: stats.interval_estimate(a, "iqm", reps=reps, seed=0),
    "median interval, runs + tasks": lambda a, b, reps: stats.interval_estimate(
        a, "median", reps=reps, seed=0, task_bootstrap=True
    ),
    "IQM t interval (leaderboard column)": lambda a, b, reps: stats.seed_t_interval(a, "iqm", reps=reps, seed=0),
    "paired test of the IQM, seed_t (ranks)": lambda a, b, reps: stats.paired_test(
        a, b, reps=reps, seed=0, metric="iqm"
    ),
    "probability of improvement interval": lambda a, b, reps: stats.probability_of_improvement_ci(
        a, b, reps=reps, seed=0
    ),
    "performance profile band, 101 taus": lambda a, b, reps: stats.performance_profile(a, TAUS, reps=reps, seed=0),
}
"""name -> call on two score matrices with `reps` resamples."""


@pytest.mark.parametrize("name", ESTIMATES)
def test_estimate(benchmark, name: str) -> None:
    a, b = scores(22), scores(23)
    setting = f"{RUNS} runs x {TASKS} tasks, {SCALE.stats_reps} resamples"
    record(benchmark, "stats", name, "ours", setting, {"resamples": SCALE.stats_reps})
    benchmark.pedantic(ESTIMATES[name], args=(a, b, SCALE.stats_reps), rounds=SCALE.rounds, warmup_rounds=SCALE.warmup)
