"""Statistics of a built split: steps, behavior == label share, normalised returns per behavior policy."""

from __future__ import annotations

import numpy as np

from bench.data import behavior as bh
from bench.data.loader import ShardedSequences
from bench.metrics import normalized


def sequence_episodes(
    reward: np.ndarray, done: np.ndarray, policy: np.ndarray, j_opt: np.ndarray, j_rand: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Completed episodes of sequences (n, T): (sequence row, start step, behavior kind, normalised return).

    The kind is the one acting at the episode's first step (kinds switch only at episode ends);
    an episode cut by the end of its sequence is left out.
    """
    rows, ends = np.nonzero(done)
    cumulative = np.cumsum(reward.astype(np.float64), axis=1)
    first_of_row = np.r_[True, rows[1:] != rows[:-1]]
    starts = np.where(first_of_row, 0, np.r_[0, ends[:-1] + 1])
    before = np.where(starts > 0, cumulative[rows, np.maximum(starts - 1, 0)], 0.0)
    returns = cumulative[rows, ends] - before
    return rows, starts, policy[rows, starts], normalized(returns, j_rand[rows], j_opt[rows])


def split_stats(dataset: ShardedSequences) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Rows per behavior policy (share of steps, episodes, normalised-return mean and quantiles) and totals."""
    steps = np.zeros(len(bh.POLICIES), dtype=np.int64)
    agree = 0
    scores: list[list[np.ndarray]] = [[] for _ in bh.POLICIES]
    for folder in dataset.folders:
        arrays = {
            name: np.load(folder / f"{name}.npy")
            for name in ("reward", "done", "policy", "action", "label", "j_opt", "j_rand")
        }
        steps += np.bincount(arrays["policy"].ravel(), minlength=len(bh.POLICIES))
        agree += int((arrays["action"] == arrays["label"]).sum())
        _, _, kinds, values = sequence_episodes(*(arrays[k] for k in ("reward", "done", "policy", "j_opt", "j_rand")))
        for k in range(len(bh.POLICIES)):
            scores[k].append(values[(kinds == k) & np.isfinite(values)])
    total = int(steps.sum())
    rows = []
    for k, name in enumerate(bh.POLICIES):
        values = np.concatenate(scores[k])
        quantiles = np.quantile(values, [0.1, 0.5, 0.9]) if len(values) else [np.nan] * 3
        rows.append(
            {
                "policy": name,
                "step share": steps[k] / total,
                "episodes": len(values),
                "mean score": float(values.mean()) if len(values) else np.nan,
                "p10": float(quantiles[0]),
                "median": float(quantiles[1]),
                "p90": float(quantiles[2]),
            }
        )
    return rows, {"sequences": len(dataset), "steps": total, "behavior == label": agree / total}
