"""ICRL metrics: the d_t curve, bootstrap intervals over tasks, and the summary scores.

Pure NumPy functions of rollout records; every random draw (bootstrap) from a seeded Generator.
Shapes: N tasks, T recorded steps. `rewards (N, T)` and `dones (N, T)` (the episode ended after
the step) come from a rollout of `steps` scored steps, continued (T >= steps) until every episode
that started before `steps` has ended; `j_opt`, `j_rand` (N,) are exact per-task returns.

Scores average *episodes*, each placed at the step where it started: an episode's return does
not depend on when it started (for a policy that does not change), so the oracle scores 1 and
the uniform-random policy 0 at every step. Averaging over *steps* instead (each step given the
return of the episode it belongs to) weights an episode by its length, and long episodes are
the good ones in AnyMDP (pitfalls end bad ones early): the oracle would score up to 1.2 (see
docs/recipe.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.errors import BenchError

GAP_THRESHOLD = 0.01
"""A task is scorable when J_opt - J_rand >= GAP_THRESHOLD * max(1, |J_opt|). Below it every policy
is about as good as any other and a normalised score would mostly measure reward noise: such test
tasks are left out of evaluation, and `normalized` gives NaN for them."""
CI_LEVEL = 0.95
CURVE_POINTS = 64
"""The curve has one point per window of `steps // CURVE_POINTS` steps."""
SMOOTHING_POINTS = 4
"""The smoothed curve (for the asymptotic score and steps to 80 %) averages this many points."""


@dataclass(frozen=True)
class Episodes:
    """Every scored episode of a rollout: those that started before `steps`, all complete."""

    task: np.ndarray
    """(E,) int: task index of each episode."""
    start: np.ndarray
    """(E,) int: step at which the episode started."""
    ret: np.ndarray
    """(E,) float: return (sum of rewards) of the episode."""
    index: np.ndarray
    """(E,) int: the episode's number within its task (0 = first)."""
    n_tasks: int
    """N."""
    steps: int
    """Scored steps: episodes starting at or after this are left out."""

    def select(self, tasks: np.ndarray) -> Episodes:
        """The episodes of the given tasks (renumbered 0..len(tasks)-1, in that order)."""
        tasks = np.asarray(tasks, dtype=np.int64)
        new_index = np.full(self.n_tasks, -1)
        new_index[tasks] = np.arange(tasks.size)
        keep = np.flatnonzero(new_index[self.task] >= 0)
        keep = keep[np.argsort(new_index[self.task[keep]], kind="stable")]
        return Episodes(
            new_index[self.task[keep]], self.start[keep], self.ret[keep], self.index[keep], tasks.size, self.steps
        )

    def to_record(self) -> dict[str, list[list]]:
        """Per task, the start step and return of each scored episode (JSON-ready): every summary
        metric is a function of this record, so a result file can be re-scored from it."""
        order = np.lexsort((self.index, self.task))
        split = np.cumsum(np.bincount(self.task, minlength=self.n_tasks))[:-1]
        return {
            "episode_starts": [part.tolist() for part in np.split(self.start[order], split)],
            "episode_returns": [part.tolist() for part in np.split(self.ret[order], split)],
        }

    @classmethod
    def from_record(cls, record: dict, steps: int) -> Episodes:
        """Inverse of `to_record`; BenchError where the record cannot come from a rollout of `steps`."""
        starts, returns = record["episode_starts"], record["episode_returns"]
        if len(starts) != len(returns):
            raise BenchError(f"{len(starts)} tasks of episode starts but {len(returns)} of returns")
        tasks, start, ret, index = [], [], [], []
        for i, (task_starts, task_returns) in enumerate(zip(starts, returns)):
            task_starts = np.asarray(task_starts, dtype=np.int64)
            if len(task_starts) != len(task_returns) or not len(task_starts):
                raise BenchError(f"task {i}: {len(task_starts)} episode starts and {len(task_returns)} returns")
            if task_starts[0] != 0 or np.any(np.diff(task_starts) <= 0) or task_starts[-1] >= steps:
                raise BenchError(f"task {i}: episode starts must rise from 0 and stay below {steps}")
            tasks.append(np.full(task_starts.size, i))
            start.append(task_starts)
            ret.append(np.asarray(task_returns, dtype=np.float64))
            index.append(np.arange(task_starts.size))
        return cls(
            np.concatenate(tasks), np.concatenate(start), np.concatenate(ret), np.concatenate(index), len(starts), steps
        )


def episode_ids(dones: np.ndarray) -> np.ndarray:
    """(N, T) int: index of the episode each step belongs to (0 for the first episode)."""
    dones = np.asarray(dones, dtype=bool)
    ended_before = np.zeros_like(dones, dtype=np.int64)
    ended_before[:, 1:] = np.cumsum(dones[:, :-1], axis=1)
    return ended_before


def episodes(rewards: np.ndarray, dones: np.ndarray, steps: int) -> Episodes:
    """The episodes that start before `steps`; each must end within the record."""
    rewards = np.asarray(rewards, dtype=np.float64)
    dones = np.asarray(dones, dtype=bool)
    if rewards.shape != dones.shape or rewards.ndim != 2:
        raise BenchError(f"rewards {rewards.shape} and dones {dones.shape} must be equal (N, T) shapes")
    n_tasks, length = rewards.shape
    if not 1 <= steps <= length:
        raise BenchError(f"steps={steps} must be in [1, {length}] (the recorded steps)")
    ids = episode_ids(dones)
    tasks, starts, returns, numbers = [], [], [], []
    for i in range(n_tasks):
        n_scored = int(ids[i, steps - 1]) + 1  # episodes that started before `steps`
        if int(dones[i].sum()) < n_scored:
            raise BenchError(
                f"task {i}: the episode that started before step {steps} never ends in the record; continue the rollout"
            )
        sums = np.bincount(ids[i], weights=rewards[i])[:n_scored]
        first_step = np.searchsorted(ids[i], np.arange(n_scored))
        tasks.append(np.full(n_scored, i))
        starts.append(first_step)
        returns.append(sums)
        numbers.append(np.arange(n_scored))
    return Episodes(
        np.concatenate(tasks), np.concatenate(starts), np.concatenate(returns), np.concatenate(numbers), n_tasks, steps
    )


def scorable(j_rand: np.ndarray, j_opt: np.ndarray) -> np.ndarray:
    """Boolean mask of the tasks whose gap J_opt - J_rand clears GAP_THRESHOLD (the one rule)."""
    j_rand, j_opt = np.asarray(j_rand, dtype=np.float64), np.asarray(j_opt, dtype=np.float64)
    return (j_opt - j_rand) >= GAP_THRESHOLD * np.maximum(1.0, np.abs(j_opt))


def normalized(returns: np.ndarray, j_rand: np.ndarray, j_opt: np.ndarray) -> np.ndarray:
    """(R - J_rand) / (J_opt - J_rand): 0 is uniform random, 1 the finite-horizon optimum.

    Tasks are on axis 0 of `returns` (further axes broadcast); NaN for tasks that are not
    `scorable`, and NaN returns stay NaN."""
    returns = np.asarray(returns, dtype=np.float64)
    j_rand, j_opt = np.asarray(j_rand, dtype=np.float64), np.asarray(j_opt, dtype=np.float64)
    ok = scorable(j_rand, j_opt)
    gap = np.where(ok, j_opt - j_rand, 1.0)
    shape = j_rand.shape + (1,) * (returns.ndim - j_rand.ndim)
    return np.where(ok.reshape(shape), (returns - j_rand.reshape(shape)) / gap.reshape(shape), np.nan)


def task_means(ep: Episodes, scores: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """(N, len(bins) - 1): per task, the mean score of its episodes starting in
    [bins[k], bins[k+1]); NaN where none started there."""
    k = np.searchsorted(bins, ep.start, side="right") - 1
    inside = (k >= 0) & (k < len(bins) - 1)
    n_bins = len(bins) - 1
    cell = ep.task[inside] * n_bins + k[inside]
    sums = np.bincount(cell, weights=scores[inside], minlength=ep.n_tasks * n_bins)
    counts = np.bincount(cell, minlength=ep.n_tasks * n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).reshape(ep.n_tasks, n_bins)


def smooth(curve: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last `window` points (fewer at the start), NaN ignored."""
    if window < 1:
        raise BenchError(f"smooth: window={window}; accepted: a positive integer")
    curve = np.asarray(curve, dtype=np.float64)
    valid = ~np.isnan(curve)
    sums = np.concatenate([[0.0], np.cumsum(np.where(valid, curve, 0.0))])
    counts = np.concatenate([[0], np.cumsum(valid)])
    ends = np.arange(1, curve.size + 1)
    starts = np.maximum(ends - window, 0)
    n = counts[ends] - counts[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[ends] - sums[starts]) / np.maximum(n, 1), np.nan)


def bootstrap_weights(n_items: int, n_samples: int, seed: int) -> np.ndarray:
    """(n_samples, n_items) resampling counts: each row is one bootstrap draw of items with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=n_samples).astype(np.float64)


def bootstrap_nanmean_ci(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile 95 % interval of the NaN-ignoring mean over axis 0 of `values` (N,) or (N, M),
    under the resampling `weights` (S, N) from `bootstrap_weights`."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(values.shape[0], -1)
    valid = ~np.isnan(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ np.where(valid, flat, 0.0)) / (weights @ valid)
    tail = (1 - CI_LEVEL) / 2 * 100
    bounds = np.nanpercentile(means, [tail, 100 - tail], axis=0)
    return bounds[0].reshape(values.shape[1:]), bounds[1].reshape(values.shape[1:])


def task_few_shot(ep: Episodes, scores: np.ndarray, k: int) -> np.ndarray:
    """(N,): per task, the mean score of its first `k` episodes (fewer if it has fewer; NaN if none)."""
    if k < 1:
        raise BenchError(f"few_shot_score: k={k}; accepted: a positive integer")
    first = ep.index < k
    sums = np.bincount(ep.task[first], weights=scores[first], minlength=ep.n_tasks)
    counts = np.bincount(ep.task[first], minlength=ep.n_tasks)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def few_shot_score(ep: Episodes, scores: np.ndarray, k: int) -> float:
    """Mean score of the first `k` episodes of each task (fewer if the task has fewer), averaged over tasks."""
    per_task = task_few_shot(ep, scores, k)
    return float(np.mean(per_task[~np.isnan(per_task)]))


def episode_scores(ep: Episodes, j_rand: np.ndarray, j_opt: np.ndarray) -> np.ndarray:
    """(E,) normalised score of every scored episode."""
    return normalized(ep.ret, np.asarray(j_rand)[ep.task], np.asarray(j_opt)[ep.task])


def steps_to_reach(smoothed: np.ndarray, level: float = 0.8) -> int | None:
    """Index of the first point with smoothed[t] >= level, or None."""
    hits = np.flatnonzero(np.nan_to_num(smoothed, nan=-np.inf) >= level)
    return int(hits[0]) if hits.size else None


def curve_edges(steps: int) -> np.ndarray:
    """Window boundaries of the curve: every `steps // CURVE_POINTS` steps (at least 1), then `steps`
    (the last window may be shorter)."""
    return np.append(np.arange(0, steps, max(1, steps // CURVE_POINTS)), steps)


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _check_steps(steps: int) -> int:
    if steps < 4:
        raise BenchError(f"summarize: steps={steps}; at least 4 are needed for quarter means")
    return steps


def summarize(
    rewards: np.ndarray,
    dones: np.ndarray,
    steps: int,
    j_rand: np.ndarray,
    j_opt: np.ndarray,
    few_shot_episodes: int,
    bootstrap_samples: int,
    seed: int,
) -> dict:
    """The Summary record of docs/results-schema.md for one group of tasks."""
    _check_steps(steps)
    return summarize_episodes(
        episodes(rewards, dones, steps), j_rand, j_opt, few_shot_episodes, bootstrap_samples, seed
    )


def summarize_episodes(
    ep: Episodes, j_rand: np.ndarray, j_opt: np.ndarray, few_shot_episodes: int, bootstrap_samples: int, seed: int
) -> dict:
    """`summarize` of scored episodes (`episodes(...)` or `Episodes.from_record(...)`)."""
    steps = _check_steps(ep.steps)
    scores = episode_scores(ep, j_rand, j_opt)
    weights = bootstrap_weights(ep.n_tasks, bootstrap_samples, seed)

    edges = curve_edges(steps)
    per_window = task_means(ep, scores, edges)  # (N, windows)
    valid = ~np.isnan(per_window)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, per_window, 0.0).sum(0) / valid.sum(0)
    keep = ~np.isnan(mean)
    lo, hi = bootstrap_nanmean_ci(per_window[:, keep], weights)
    smoothed = smooth(mean, SMOOTHING_POINTS)
    reach = steps_to_reach(smoothed, 0.8)

    quarter = steps // 4
    quarters = task_means(ep, scores, np.array([0, quarter, steps - quarter, steps]))
    first, last = quarters[:, 0], quarters[:, 2]
    diff = last - first  # NaN for a task without an episode start in either quarter
    diff_lo, diff_hi = bootstrap_nanmean_ci(diff, weights)
    tail = task_means(ep, scores, np.array([steps - max(1, steps // 10), steps]))[:, 0]
    return {
        "n_tasks": int(ep.n_tasks),
        "curve": {
            "t": edges[:-1][keep].tolist(),
            "mean": mean[keep].tolist(),
            "lo": np.asarray(lo).tolist(),
            "hi": np.asarray(hi).tolist(),
        },
        "asymptotic_max": float(np.nanmax(smoothed)),
        "asymptotic_last10": _or_none(_nanmean(tail)),
        "few_shot": few_shot_score(ep, scores, few_shot_episodes),
        "steps_to_80": None if reach is None else int(edges[reach]),
        "first_quarter": _nanmean(first),
        "last_quarter": _nanmean(last),
        "quarter_diff": _nanmean(diff),
        "quarter_diff_ci": [float(diff_lo), float(diff_hi)],
        "episodes_per_task": ep.task.size / ep.n_tasks,
    }


def summarize_groups(
    ep: Episodes,
    ns: np.ndarray,
    j_rand: np.ndarray,
    j_opt: np.ndarray,
    few_shot_episodes: int,
    bootstrap_samples: int,
    seed: int,
    labels: Sequence[str] | None = None,
) -> dict:
    """{"overall": Summary, "groups": {label: Summary}} of one agent's scored episodes; a task's
    group label is "ns=<n>" unless `labels` gives one per task (groups then keep first-seen order)."""
    ns, j_rand, j_opt = np.asarray(ns), np.asarray(j_rand, dtype=np.float64), np.asarray(j_opt, dtype=np.float64)

    def summary(index: np.ndarray) -> dict:
        return summarize_episodes(
            ep.select(index), j_rand[index], j_opt[index], few_shot_episodes, bootstrap_samples, seed
        )

    if labels is None:
        labels = [f"ns={n}" for n in ns.tolist()]
        order = [f"ns={n}" for n in sorted(set(ns.tolist()))]
    else:
        if len(labels) != ep.n_tasks:
            raise BenchError(f"labels: {len(labels)} given for {ep.n_tasks} tasks")
        order = list(dict.fromkeys(labels))
    label_array = np.asarray(labels, dtype=object)
    groups = {label: summary(np.flatnonzero(label_array == label)) for label in order}
    return {"overall": summary(np.arange(ep.n_tasks)), "groups": groups}


RECORD_DIGITS = 7
"""Significant digits of the episode returns stored in result files (keeps them a few MB)."""


def _significant(values: np.ndarray, digits: int) -> np.ndarray:
    """`values` rounded to `digits` significant digits (each the float nearest its short decimal form)."""
    return np.array([float(f"{v:.{digits}g}") for v in np.asarray(values, dtype=np.float64)])


def agent_record(
    ep: Episodes,
    ns: np.ndarray,
    j_rand: np.ndarray,
    j_opt: np.ndarray,
    few_shot_episodes: int,
    bootstrap_samples: int,
    seed: int,
    labels: Sequence[str] | None = None,
) -> dict:
    """One agent's entry in a result file: the summaries and the per-task episode record (with
    each task's ns, J_rand and J_opt) they are computed from, so that they can be recomputed.

    Returns are first rounded to RECORD_DIGITS significant digits (far below reward noise), and
    the summaries are computed from the rounded values, so the short decimal form stored in the
    file is exactly what they were computed from."""
    ep = dataclasses.replace(ep, ret=_significant(ep.ret, RECORD_DIGITS))
    record = summarize_groups(ep, ns, j_rand, j_opt, few_shot_episodes, bootstrap_samples, seed, labels)
    record["tasks"] = {
        "ns": np.asarray(ns).tolist(),
        "j_rand": np.asarray(j_rand, dtype=np.float64).tolist(),
        "j_opt": np.asarray(j_opt, dtype=np.float64).tolist(),
        **ep.to_record(),
    }
    return record
