"""Per-task scores of the runs of one architecture, from validated result files, and their
group-balanced aggregate with a two-level stratified bootstrap interval.

A run's per-task scores come from its stored anchored scores (`metrics.record_arrays`; the mean
over the run's rollouts); `task_scores` turns them into final, first, auc and gain per task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench import metrics
from bench.errors import BenchError

KINDS = ("final", "first", "auc", "gain")
"""The per-task scores of `RunScores`."""


@dataclass(frozen=True)
class RunScores:
    """One agent's per-task scores in R runs (seeds) on the same N tasks."""

    values: dict[str, np.ndarray]
    """Per KINDS name, (R, N) per-task scores."""
    curves: np.ndarray
    """(R, N, K) anchored scores."""
    groups: list[str]
    """(N,) group of each task."""
    anchors: np.ndarray
    """(K,) anchor steps."""


def record_of(doc: dict, task: str | None = None) -> dict:
    """The `interactive`-shaped record of a result: its test tasks, or the OOD task `task`."""
    return doc["interactive"] if task is None else doc["ood"]["by_task"][task]


def run_scores(docs: Sequence[dict], agent: str, task: str | None = None) -> RunScores:
    """The per-task scores of `agent` in each document (one run each), on the test tasks or on
    the OOD task `task`; the runs must have scored the same tasks."""
    records = [record_of(doc, task) for doc in docs]
    first = records[0]["agents"][agent]["tasks"]
    steps = records[0]["eval_steps"]
    anchors = metrics.anchor_steps(steps)
    curves = []
    for doc, record in zip(docs, records):
        tasks = record["agents"][agent]["tasks"]
        if record["eval_steps"] != steps or tasks["j_opt"] != first["j_opt"] or tasks["group"] != first["group"]:
            raise BenchError(
                f"{doc['arch']} seed {doc['seed']}: its {agent} was scored on other tasks or steps than seed "
                f"{docs[0]['seed']}'s; results of one preset must share their test tasks"
            )
        curves.append(metrics.record_arrays(tasks)[0])
    stacked = np.stack(curves)
    per_run = [metrics.task_scores(c, anchors, steps) for c in stacked]
    values = {kind: np.stack([run[kind] for run in per_run]) for kind in KINDS}
    return RunScores(values, stacked, list(first["group"]), anchors)


def balanced_mean(values: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """Group-balanced mean over the task axis (last) of `values` (..., N): the mean over groups of
    the NaN-ignoring mean over each group's tasks."""
    labels = np.asarray(groups, dtype=object)
    return np.mean([metrics.nanmean(values[..., labels == g], axis=-1) for g in dict.fromkeys(groups)], axis=0)


@dataclass(frozen=True)
class Estimate:
    point: float
    lo: float
    hi: float

    def cell(self, digits: int = 3) -> str:
        if np.isnan(self.point):
            return "—"
        return f"{self.point:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def balanced_estimate(values: np.ndarray, groups: Sequence[str], reps: int, rng: np.random.Generator) -> Estimate:
    """Group-balanced mean of the run-mean of `values` (R, N), and its 95 % percentile interval
    under a two-level bootstrap: the R runs drawn with replacement, then the tasks of each group
    drawn with replacement (stratified by group)."""
    runs = values[rng.integers(0, values.shape[0], size=(reps, values.shape[0]))]  # (reps, R, N)
    run_means = metrics.nanmean(runs, axis=1)  # (reps, N)
    labels = np.asarray(groups, dtype=object)
    parts = []
    for group in dict.fromkeys(groups):
        index = np.flatnonzero(labels == group)
        drawn = index[rng.integers(0, index.size, size=(reps, index.size))]
        parts.append(metrics.nanmean(np.take_along_axis(run_means, drawn, axis=1), axis=1))
    samples = np.mean(parts, axis=0)
    lo, hi = metrics.interval(samples)
    return Estimate(float(balanced_mean(metrics.nanmean(values, axis=0), groups)), float(lo), float(hi))
