"""ICRL scores: anchored episodes, task-balanced summaries and bootstrap intervals.

Pure NumPy functions of rollout records; every random draw (bootstrap) from a seeded Generator.
Shapes: N tasks, T recorded steps, K anchors. `rewards (N, T)` and `dones (N, T)` (the episode
ended after the step) come from `bench.rollout.rollout`, which runs on past its `steps` scored
steps until the episode anchored at the last anchor has ended.

**Anchored episodes.** K anchors are spread evenly over the `steps` scored steps. At each anchor a
task contributes the normalised return of the *first episode that starts at or after the anchor*,
run to its end. When that episode starts depends only on the episodes before it, and its return
only on the policy, so for a policy that does not change the anchored score is an unbiased
estimate of the policy's normalised value: 1 for the oracle and 0 for uniform random at every
anchor of every task, whatever its episode lengths. (A mean over the episodes that *start in a
window* is a ratio estimator instead: bad episodes in AnyMDP end early at pitfalls, so more of them
fit in a window, and the oracle's windows averaged 1.06-1.08; docs/recipe.md.) Every task weighs
the same at every anchor, however many episodes it fits.

**Task-balanced scores.** Per task: `final` = mean over the anchors of the last quarter, `first`
over the first quarter, `auc` over all anchors, `gain` = final - first. Per group (ns): the mean
over its tasks; overall: the mean over groups, each group weighing the same. Intervals: 95 %
percentile bootstrap, resampling tasks within each group (stratified).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.errors import BenchError

GAP_THRESHOLD = 0.01
"""A task is scorable when J_opt - J_rand >= GAP_THRESHOLD * max(1, |J_opt|). Below it every policy
is about as good as any other and a normalised score would mostly measure reward noise: such test
tasks are left out of evaluation, and `normalized` gives NaN for them."""
CI_LEVEL = 0.95
BOOTSTRAP_SEED = 0
"""Seed of the bootstrap intervals of every summary (so a result file's numbers recompute exactly)."""
ANCHORS = 64
"""Anchors per rollout (fewer when it has fewer scored steps)."""
SMOOTHING_POINTS = 4
"""Trailing window, in anchors, of the smoothed curve of the paper-style maximum."""
THRESHOLD = 0.5
"""Steps to threshold: the first anchor from which a task's mean score over the rest of the
rollout reaches this normalised score (TQL-UCB reaches it on part of the tasks; docs/recipe.md)."""
RECORD_DIGITS = 7
"""Significant digits of the per-task scores stored in result files; summaries are computed from
the rounded values, so that they recompute exactly from the file."""


def anchor_steps(steps: int) -> np.ndarray:
    """(K,) anchors: min(ANCHORS, steps) evenly spaced steps from 0 (floor of k * steps / K)."""
    if steps < 1:
        raise BenchError(f"steps={steps}; accepted: a positive integer")
    k = min(ANCHORS, steps)
    return (np.arange(k) * steps) // k


def quarter_masks(anchors: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, last): the anchors in [0, steps/4) and in [steps - steps/4, steps)."""
    quarter = steps // 4
    return anchors < quarter, anchors >= steps - quarter


def episode_ids(dones: np.ndarray) -> np.ndarray:
    """(N, T) int: index of the episode each step belongs to (0 for the first episode)."""
    dones = np.asarray(dones, dtype=bool)
    ended_before = np.zeros_like(dones, dtype=np.int64)
    ended_before[:, 1:] = np.cumsum(dones[:, :-1], axis=1)
    return ended_before


def _check_record(rewards: np.ndarray, dones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rewards, dones = np.asarray(rewards, dtype=np.float64), np.asarray(dones, dtype=bool)
    if rewards.shape != dones.shape or rewards.ndim != 2:
        raise BenchError(f"rewards {rewards.shape} and dones {dones.shape} must be equal (N, T) shapes")
    return rewards, dones


def _complete_episodes(rewards: np.ndarray, dones: np.ndarray, row: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, returns) of the episodes of one task that end within the record."""
    ends = np.flatnonzero(dones[row])
    starts = np.concatenate([[0], ends[:-1] + 1])
    ids = np.zeros(dones.shape[1], dtype=np.int64)
    ids[1:] = np.cumsum(dones[row, :-1])
    return starts[: ends.size], np.bincount(ids, weights=rewards[row])[: ends.size]


def anchored_returns(rewards: np.ndarray, dones: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(N, K) return of the first episode starting at or after each anchor; NaN where that episode
    does not end within the record."""
    rewards, dones = _check_record(rewards, dones)
    out = np.full((rewards.shape[0], len(anchors)), np.nan)
    for row in range(rewards.shape[0]):
        starts, returns = _complete_episodes(rewards, dones, row)
        pick = np.searchsorted(starts, anchors, side="left")
        ok = pick < starts.size
        out[row, ok] = returns[pick[ok]]
    return out


def first_episodes_return(rewards: np.ndarray, dones: np.ndarray, k: int) -> np.ndarray:
    """(N,) mean return of each task's first `k` episodes (its complete ones, if fewer; NaN if none):
    the few-shot score before normalisation."""
    if k < 1:
        raise BenchError(f"few-shot episodes k={k}; accepted: a positive integer")
    rewards, dones = _check_record(rewards, dones)
    out = np.full(rewards.shape[0], np.nan)
    for row in range(rewards.shape[0]):
        _, returns = _complete_episodes(rewards, dones, row)
        if returns.size:
            out[row] = returns[:k].mean()
    return out


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


def nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean ignoring NaN; NaN (without a warning) where every value is NaN."""
    values = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, values, 0.0).sum(axis) / valid.sum(axis)
    return float(mean) if np.ndim(mean) == 0 else mean


def smooth(curve: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last `window` points of the last axis (fewer at the start),
    NaN ignored."""
    if window < 1:
        raise BenchError(f"smooth: window={window}; accepted: a positive integer")
    curve = np.asarray(curve, dtype=np.float64)
    valid = ~np.isnan(curve)
    zero = np.zeros(curve.shape[:-1] + (1,))
    sums = np.concatenate([zero, np.cumsum(np.where(valid, curve, 0.0), axis=-1)], axis=-1)
    counts = np.concatenate([zero, np.cumsum(valid, axis=-1)], axis=-1)
    ends = np.arange(1, curve.shape[-1] + 1)
    starts = np.maximum(ends - window, 0)
    n = counts[..., ends] - counts[..., starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[..., ends] - sums[..., starts]) / np.maximum(n, 1), np.nan)


def bootstrap_weights(n_items: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_samples, n_items) resampling counts: each row is one bootstrap draw of items with replacement."""
    return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=n_samples).astype(np.float64)


def weighted_nanmean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(S, n) resampling weights x (n, ...) values -> (S, ...) NaN-ignoring weighted means."""
    flat = values.reshape(values.shape[0], -1)
    valid = ~np.isnan(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ np.where(valid, flat, 0.0)) / (weights @ valid)
    return means.reshape((weights.shape[0],) + values.shape[1:])


def interval(samples: np.ndarray) -> np.ndarray:
    """Percentile CI_LEVEL interval over axis 0 of bootstrap samples: (2, ...) [lo, hi]."""
    tail = (1 - CI_LEVEL) / 2 * 100
    with np.errstate(invalid="ignore"):
        return np.nanpercentile(samples, [tail, 100 - tail], axis=0)


def steps_to_threshold(curves: np.ndarray, anchors: np.ndarray, steps: int) -> np.ndarray:
    """(N,) per task, the first anchor from which its mean score over the rest of the rollout reaches
    THRESHOLD, among the anchors before the last quarter (so that the mean covers at least a quarter
    of the anchors: a short noisy stretch does not count); NaN where no such anchor exists."""
    _, last = quarter_masks(anchors, steps)
    valid = ~np.isnan(curves)
    sums = np.cumsum(np.where(valid, curves, 0.0)[:, ::-1], axis=1)[:, ::-1]
    counts = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = (sums / counts >= THRESHOLD) & ~last
    return np.where(hit.any(axis=1), anchors[hit.argmax(axis=1)].astype(np.float64), np.nan)


def task_scores(curves: np.ndarray, anchors: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """Per-task scores from (N, K) anchored normalised scores: final, first, auc, gain (N,) each."""
    first, last = quarter_masks(anchors, steps)
    final, start = nanmean(curves[:, last], axis=1), nanmean(curves[:, first], axis=1)
    return {"final": final, "first": start, "auc": nanmean(curves, axis=1), "gain": final - start}


def _or_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def summarize(
    curves: np.ndarray,
    few_shot: np.ndarray,
    groups: Sequence[str],
    anchors: np.ndarray,
    steps: int,
    bootstrap_samples: int,
    seed: int,
) -> dict:
    """{"overall": Summary, "groups": {label: Summary}} of one agent (docs/results-schema.md), from
    its (N, K) anchored normalised scores `curves` and (N,) normalised few-shot scores; groups keep
    their first-seen order, and the overall score weighs each group the same."""
    curves, few_shot = np.asarray(curves, dtype=np.float64), np.asarray(few_shot, dtype=np.float64)
    if steps < 4:
        raise BenchError(f"summarize: steps={steps}; at least 4 scored steps are needed for quarter scores")
    if curves.shape != (len(groups), len(anchors)) or few_shot.shape != (len(groups),):
        raise BenchError(
            f"summarize: curves {curves.shape} and few_shot {few_shot.shape} must be (N, K) and (N,) "
            f"for {len(groups)} tasks and {len(anchors)} anchors"
        )
    per_task = task_scores(curves, anchors, steps)
    per_task["few_shot"] = few_shot
    reach = steps_to_threshold(curves, anchors, steps)
    per_task["reached"] = (~np.isnan(reach)).astype(np.float64)
    rng = np.random.default_rng(seed)
    labels = np.asarray(groups, dtype=object)
    points, draws, summaries = [], [], {}
    for label in dict.fromkeys(groups):
        index = np.flatnonzero(labels == label)
        weights = bootstrap_weights(index.size, bootstrap_samples, rng)
        values = {key: v[index] for key, v in per_task.items()} | {"curve": curves[index]}
        point = {key: nanmean(v, axis=0) for key, v in values.items()}
        sample = {key: weighted_nanmean(weights, v) for key, v in values.items()}
        summaries[label] = _summary(point, sample, reach[index], anchors, index.size)
        points.append(point)
        draws.append(sample)
    overall_point = {key: nanmean(np.stack([p[key] for p in points]), axis=0) for key in points[0]}
    overall_draws = {key: nanmean(np.stack([d[key] for d in draws]), axis=0) for key in draws[0]}
    overall = _summary(overall_point, overall_draws, reach, anchors, len(groups))
    return {"overall": overall, "groups": summaries}


def _summary(point: dict, sample: dict, reach: np.ndarray, anchors: np.ndarray, n_tasks: int) -> dict:
    lo, hi = interval(sample["curve"])
    reached = reach[~np.isnan(reach)]
    out: dict = {"n_tasks": int(n_tasks)}
    for key in ("final", "auc", "gain"):
        out[key] = _or_none(point[key])
        out[f"{key}_ci"] = [_or_none(v) for v in interval(sample[key])]
    out["first"] = _or_none(point["first"])
    out["few_shot"] = _or_none(point["few_shot"])
    out["reach_fraction"] = _or_none(point["reached"])
    out["steps_to_threshold"] = int(np.median(reached)) if reached.size else None
    smoothed = smooth(point["curve"], SMOOTHING_POINTS)
    out["paper_max"] = None if np.isnan(smoothed).all() else float(np.nanmax(smoothed))
    out["curve"] = {
        "t": anchors.tolist(),
        "mean": [_or_none(v) for v in point["curve"]],
        "lo": [_or_none(v) for v in lo],
        "hi": [_or_none(v) for v in hi],
    }
    return out


def significant(values: np.ndarray, digits: int = RECORD_DIGITS) -> np.ndarray:
    """`values` rounded to `digits` significant digits (each the float nearest its short decimal form)."""
    values = np.asarray(values, dtype=np.float64)
    return np.vectorize(lambda v: v if np.isnan(v) else float(f"{v:.{digits}g}"), otypes=[np.float64])(values)


def agent_record(
    curves: np.ndarray,
    few_shot: np.ndarray,
    ns: np.ndarray,
    groups: Sequence[str],
    j_rand: np.ndarray,
    j_opt: np.ndarray,
    steps: int,
    bootstrap_samples: int,
    seed: int,
) -> dict:
    """One agent's entry in a result file: the summaries, and the per-task anchored scores (mean over
    the rollouts, rounded to RECORD_DIGITS) they are computed from, with each task's ns, group,
    J_rand and J_opt, so that every number can be recomputed from the file."""
    curves, few_shot = significant(curves), significant(few_shot)
    anchors = anchor_steps(steps)
    record = summarize(curves, few_shot, groups, anchors, steps, bootstrap_samples, seed)
    record["tasks"] = {
        "ns": np.asarray(ns).tolist(),
        "group": list(groups),
        "j_rand": np.asarray(j_rand, dtype=np.float64).tolist(),
        "j_opt": np.asarray(j_opt, dtype=np.float64).tolist(),
        "few_shot": [_or_none(v) for v in few_shot],
        "anchored": [[_or_none(v) for v in row] for row in curves],
    }
    return record


def record_arrays(tasks: dict) -> tuple[np.ndarray, np.ndarray]:
    """(curves (N, K), few_shot (N,)) of a stored `tasks` record, null as NaN."""
    curves = np.array([[np.nan if v is None else v for v in row] for row in tasks["anchored"]], dtype=np.float64)
    few_shot = np.array([np.nan if v is None else v for v in tasks["few_shot"]], dtype=np.float64)
    return curves.reshape(len(tasks["anchored"]), -1), few_shot


def rollout_noise(per_rollout: np.ndarray, groups: Sequence[str], anchors: np.ndarray, steps: int) -> list[list]:
    """How the run's overall final score varies with the number of rollouts averaged: for m = 1, 2,
    4, ... (at least two disjoint subsets of the R rollouts), [m, standard deviation of the overall
    final score over the R // m disjoint subsets of m rollouts]. `per_rollout`: (R, N, K)."""
    rollouts = per_rollout.shape[0]
    labels = np.asarray(groups, dtype=object)
    out, m = [], 1
    while rollouts // m >= 2:
        finals = []
        for part in range(rollouts // m):
            curves = nanmean(per_rollout[part * m : (part + 1) * m], axis=0)
            final = task_scores(curves, anchors, steps)["final"]
            finals.append(np.mean([nanmean(final[labels == g]) for g in dict.fromkeys(groups)]))
        out.append([m, float(np.std(finals, ddof=1))])
        m *= 2
    return out
