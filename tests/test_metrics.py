"""ICRL metric functions against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import metrics
from bench.errors import BenchError

NAN = float("nan")


def test_anchored_returns_and_few_shot_by_hand():
    rewards = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]])
    dones = np.array([[False, True, False, False, True, False, False]])  # episodes 0-1, 2-4; 5- open
    assert metrics.episode_ids(dones).tolist() == [[0, 0, 1, 1, 1, 2, 2]]
    got = metrics.anchored_returns(rewards, dones, np.array([0, 1, 2, 3, 5]))
    # anchor 0 -> episode at 0 (3); 1, 2 -> episode at 2 (12); 3 and 5 -> episode at 5, not complete
    np.testing.assert_array_equal(got[0, :3], [3.0, 12.0, 12.0])
    assert np.isnan(got[0, 3:]).all()
    assert metrics.first_episodes_return(rewards, dones, 1)[0] == 3.0
    assert metrics.first_episodes_return(rewards, dones, 5)[0] == 7.5  # the two complete ones
    assert np.isnan(metrics.first_episodes_return(rewards, np.zeros_like(dones), 2)[0])
    with pytest.raises(BenchError, match="k=0"):
        metrics.first_episodes_return(rewards, dones, 0)
    assert metrics.anchor_steps(8).tolist() == list(range(8))
    anchors = metrics.anchor_steps(512)
    assert anchors.size == metrics.ANCHORS and anchors[1] == 8 and anchors[-1] == 504
    first, last = metrics.quarter_masks(anchors, 512)
    assert first.sum() == last.sum() == 16 and anchors[last][0] == 384


def _length_biased_record(rng: np.random.Generator, n_tasks: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Episodes drawn i.i.d.: good (8 steps, return 2) or bad (2 steps, return 0) with probability
    1/2 each, back to back: a fixed policy of normalised value 0.5 (J_rand 0, J_opt 2), whose
    good episodes fill 80 % of the steps."""
    rewards, dones = np.zeros((n_tasks, length)), np.zeros((n_tasks, length), dtype=bool)
    for i in range(n_tasks):
        t = 0
        while t < length:
            good = rng.random() < 0.5
            end = min(t + (8 if good else 2), length) - 1
            rewards[i, end] = 2.0 if good and end == t + 7 else 0.0
            dones[i, end] = end == t + (7 if good else 1)
            t = end + 1
    return rewards, dones


def test_anchored_scores_are_unbiased_where_episode_lengths_depend_on_returns():
    rewards, dones = _length_biased_record(np.random.default_rng(0), 400, 200)
    anchors = metrics.anchor_steps(160)
    scores = metrics.normalized(metrics.anchored_returns(rewards, dones, anchors), np.zeros(400), np.full(400, 2.0))
    per_task = metrics.nanmean(scores, axis=1)
    standard_error = per_task.std(ddof=1) / np.sqrt(per_task.size)
    assert abs(per_task.mean() - 0.5) < 4 * standard_error < 0.05
    # the episode *in progress* at the anchor instead is length-biased: good ones cover 80 % of steps
    ids = metrics.episode_ids(dones)
    ends = np.cumsum(dones, axis=1)
    in_progress = []
    for i in range(400):
        returns = np.bincount(ids[i], weights=rewards[i])
        in_progress += [returns[ids[i, a]] / 2 for a in anchors if ids[i, a] < ends[i, -1]]
    assert np.mean(in_progress) > 0.7


def test_normalized_and_the_one_gap_rule():
    got = metrics.normalized(np.array([[2.0, 4.0], [0.0, 1.0]]), np.array([0.0, 0.0]), np.array([4.0, 2.0]))
    np.testing.assert_allclose(got, [[0.5, 1.0], [0.0, 0.5]])
    # gap 0, gap 0.009 < 0.01 * max(1, 5): not scorable (NaN); gap 0.1 >= 0.01 * max(1, 5): scored
    j_rand, j_opt = np.array([1.0, 5.0, 4.9, 1.0]), np.array([1.0, 5.009, 5.0, 3.0])
    assert metrics.scorable(j_rand, j_opt).tolist() == [False, False, True, True]
    score = metrics.normalized(np.array([1.0, 5.0, 5.0, 2.0]), j_rand, j_opt)
    assert np.isnan(score[:2]).all() and score[2:] == pytest.approx([1.0, 0.5])
    assert metrics.normalized(2.0, 1.0, 3.0) == pytest.approx(0.5)  # scalars
    assert np.isnan(metrics.normalized(np.array([np.nan]), np.array([0.0]), np.array([1.0]))[0])


def test_smooth_trailing_window_ignores_nan():
    got = metrics.smooth(np.array([1.0, 3.0, NAN, 5.0]), window=2)
    np.testing.assert_allclose(got, [1.0, 2.0, 3.0, 5.0])
    assert math.isnan(metrics.smooth(np.array([NAN]), 3)[0])
    with pytest.raises(BenchError, match="window=0"):
        metrics.smooth(np.ones(3), 0)


def test_smooth_along_the_last_axis_and_steps_to_threshold():
    curves = np.array([[0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0], [0.0] * 7 + [1.0], [0.0] + [0.6] * 7])
    np.testing.assert_allclose(metrics.smooth(curves, 2)[0], [0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0])
    got = metrics.steps_to_threshold(curves, np.arange(8) * 10, 80)
    # task 0: mean from anchor 1 on is 5/7 >= .5 (from anchor 0: 5/8 too); task 1: only the last
    # quarter's anchors reach it (1/2 from anchor 6: not counted); task 2: from anchor 0, 4.2 / 8 >= .5
    assert got[0] == 0 and np.isnan(got[1]) and got[2] == 0
    assert metrics.steps_to_threshold(curves[:1] * 0.7, np.arange(8) * 10, 80)[0] == 10  # 3.5 / 7 from anchor 1


def test_bootstrap_interval_contains_mean_and_is_seeded():
    values = np.arange(10, dtype=float)
    w = metrics.bootstrap_weights(10, 2000, np.random.default_rng(3))
    assert w.shape == (2000, 10) and (w.sum(1) == 10).all()
    lo, hi = metrics.interval(metrics.weighted_nanmean(w, values))
    assert lo < 4.5 < hi and hi - lo < 5  # standard error ~0.9: interval ~ +-1.8
    again = metrics.interval(
        metrics.weighted_nanmean(metrics.bootstrap_weights(10, 2000, np.random.default_rng(3)), values)
    )
    assert (lo, hi) == tuple(again)


def test_summarize_by_hand_weighs_groups_equally():
    # 8 steps, 8 anchors. Group a: one task improving from 0 to 1 at anchor 4; group b: three tasks at 0.2
    curves = np.array([[0.0] * 4 + [1.0] * 4] + [[0.2] * 8] * 3)
    few = np.array([0.0, 0.2, 0.2, 0.2])
    s = metrics.summarize(curves, few, ["a", "b", "b", "b"], metrics.anchor_steps(8), 8, 500, seed=0)
    a, b, overall = s["groups"]["a"], s["groups"]["b"], s["overall"]
    assert (a["final"], a["first"], a["gain"], a["auc"]) == (1.0, 0.0, 1.0, 0.5)
    assert b["final"] == pytest.approx(0.2) and b["gain"] == pytest.approx(0.0)
    assert overall["final"] == pytest.approx(0.6) and overall["gain"] == pytest.approx(0.5)  # not (1 + 3 * .2) / 4
    assert overall["few_shot"] == pytest.approx(0.1) and overall["n_tasks"] == 4
    assert a["reach_fraction"] == 1.0 and b["reach_fraction"] == 0.0 and overall["reach_fraction"] == 0.5
    assert a["steps_to_threshold"] == 0  # the mean from anchor 0 to the end is 0.5
    assert overall["curve"]["t"] == list(range(8)) and overall["curve"]["mean"][-1] == pytest.approx(0.6)
    assert overall["paper_max"] == pytest.approx(0.6)
    for summary in (a, b, overall):  # one task per group a: its interval is its point
        lo, hi = summary["final_ci"]
        assert lo <= summary["final"] + 1e-12 and hi >= summary["final"] - 1e-12
    with pytest.raises(BenchError, match="at least 4"):
        metrics.summarize(curves[:, :3], few, ["a"] * 4, np.arange(3), 3, 10, seed=0)
    with pytest.raises(BenchError, match="must be"):
        metrics.summarize(curves, few[:2], ["a"] * 4, metrics.anchor_steps(8), 8, 10, seed=0)


def test_agent_record_rounds_and_recomputes():
    curves = np.array([[1 / 3] * 8, [np.nan] + [2 / 3] * 7])
    record = metrics.agent_record(
        curves, np.array([0.1, np.nan]), np.array([8, 8]), ["ns=8"] * 2, np.zeros(2), np.ones(2), 8, 50, 0
    )
    assert record["tasks"]["anchored"][0][0] == 0.3333333 and record["tasks"]["anchored"][1][0] is None
    assert record["tasks"]["few_shot"] == [0.1, None]
    again_curves, again_few = metrics.record_arrays(record["tasks"])
    again = metrics.summarize(again_curves, again_few, ["ns=8"] * 2, metrics.anchor_steps(8), 8, 50, 0)
    assert again == {key: record[key] for key in ("overall", "groups")}


def test_rollout_noise_falls_with_rollouts():
    rng = np.random.default_rng(1)
    per_rollout = rng.normal(0.3, 1.0, size=(16, 20, 8))  # 16 rollouts, 20 tasks, 8 anchors
    noise = metrics.rollout_noise(per_rollout, ["g"] * 20, metrics.anchor_steps(8), 8)
    assert [m for m, _ in noise] == [1, 2, 4, 8]
    sd = dict(noise)
    # one rollout: final = mean of 2 anchors x 20 tasks of sd 1 -> sd 1 / sqrt(40) ~ 0.16
    assert 0.08 < sd[1] < 0.25 and sd[4] < sd[1]
    assert metrics.rollout_noise(per_rollout[:1], ["g"] * 20, metrics.anchor_steps(8), 8) == []
