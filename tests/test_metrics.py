"""ICRL metric functions against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import metrics
from bench.errors import BenchError

NAN = float("nan")


def test_episode_table_by_hand():
    rewards = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]])
    dones = np.array([[False, True, False, False, True, False, True]])
    assert metrics.episode_ids(dones).tolist() == [[0, 0, 1, 1, 1, 2, 2]]
    # scored steps 5: episodes starting at 0, 2 (complete) and 5 (ends in the tail, at step 6)
    ep = metrics.episodes(rewards, dones, steps=6)
    assert ep.start.tolist() == [0, 2, 5] and ep.ret.tolist() == [3, 12, 13] and ep.index.tolist() == [0, 1, 2]
    ep = metrics.episodes(rewards, dones, steps=5)  # the episode starting at step 5 is not scored
    assert ep.start.tolist() == [0, 2]
    with pytest.raises(BenchError, match="never ends"):
        metrics.episodes(rewards[:, :6], dones[:, :6], steps=6)


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


def test_task_means_by_start_window():
    ep = metrics.Episodes(
        task=np.array([0, 0, 0, 1]),
        start=np.array([0, 3, 5, 0]),
        ret=np.zeros(4),
        index=np.array([0, 1, 2, 0]),
        n_tasks=2,
        steps=8,
    )
    got = metrics.task_means(ep, np.array([1.0, 2.0, 4.0, 7.0]), np.array([0, 4, 8]))
    np.testing.assert_array_equal(got[0], [1.5, 4.0])
    assert got[1, 0] == 7.0 and math.isnan(got[1, 1])


def test_smooth_trailing_window_ignores_nan():
    got = metrics.smooth(np.array([1.0, 3.0, NAN, 5.0]), window=2)
    np.testing.assert_allclose(got, [1.0, 2.0, 3.0, 5.0])
    assert math.isnan(metrics.smooth(np.array([NAN]), 3)[0])
    with pytest.raises(BenchError, match="window=0"):
        metrics.smooth(np.ones(3), 0)


def test_bootstrap_interval_contains_mean_and_is_seeded():
    values = np.arange(10, dtype=float)
    w = metrics.bootstrap_weights(10, 2000, seed=3)
    assert w.shape == (2000, 10) and (w.sum(1) == 10).all()
    lo, hi = metrics.bootstrap_nanmean_ci(values, w)
    assert lo < 4.5 < hi and hi - lo < 5  # standard error ~0.9: interval ~ +-1.8
    lo2, hi2 = metrics.bootstrap_nanmean_ci(values, metrics.bootstrap_weights(10, 2000, seed=3))
    assert (lo, hi) == (lo2, hi2)
    lo, hi = metrics.bootstrap_nanmean_ci(np.full((5, 2), 0.25), metrics.bootstrap_weights(5, 100, 0))
    np.testing.assert_allclose([lo, hi], [[0.25, 0.25], [0.25, 0.25]])


def test_steps_to_reach_and_curve_edges():
    assert metrics.steps_to_reach(np.array([0.1, NAN, 0.79, 0.8, 0.9])) == 3
    assert metrics.steps_to_reach(np.array([0.1, 0.2])) is None
    assert metrics.curve_edges(8).tolist() == list(range(9))
    edges = metrics.curve_edges(2048)
    assert edges[1] == 32 and edges[-1] == 2048 and len(edges) == metrics.CURVE_POINTS + 1
    assert metrics.curve_edges(100)[-2:].tolist() == [99, 100]


def test_summarize_two_tasks_by_hand():
    # 8 scored steps, episodes of 2 steps; J_rand = 0, J_opt = 2.
    # task 0 improves: returns 0, 0, 2, 2 (starts 0, 2, 4, 6) -> d per episode 0 0 1 1
    # task 1 constant: returns 1, 1, 1, 1 -> d .5 .5 .5 .5
    dones = np.tile([False, True], 4)[None].repeat(2, 0)
    rewards = np.array([[0, 0, 0, 0, 1, 1, 1, 1], [0.5] * 8], dtype=float)
    s = metrics.summarize(rewards, dones, 8, np.zeros(2), np.full(2, 2.0), 1, 500, seed=0)
    assert s["n_tasks"] == 2 and s["episodes_per_task"] == 4
    # one curve point per step; episodes start at even steps only
    assert s["curve"]["t"] == [0, 2, 4, 6]
    np.testing.assert_allclose(s["curve"]["mean"], [0.25, 0.25, 0.75, 0.75])
    assert s["first_quarter"] == pytest.approx(0.25) and s["last_quarter"] == pytest.approx(0.75)
    assert s["quarter_diff"] == pytest.approx(0.5)
    # the bootstrap over two tasks draws diffs of {1, 0}: interval within [0, 1]
    assert 0.0 <= s["quarter_diff_ci"][0] <= 0.5 <= s["quarter_diff_ci"][1] <= 1.0
    assert s["asymptotic_max"] == pytest.approx(0.75)  # smoothed over 4 points: (.75 + .75) / 2 at the end
    assert s["asymptotic_last10"] is None  # the last 10 % is step 7, where no episode starts
    assert s["few_shot"] == pytest.approx(0.25)  # first episode: 0 and 0.5
    assert s["steps_to_80"] is None


def test_summarize_length_bias_free_for_a_fixed_policy():
    """Long good episodes and short bad ones, alternating: the per-episode mean is 0.5 while a
    per-step average would say 0.9 (8 of every 10 steps are in good episodes)."""
    pattern_r = [0, 0, 0, 0, 0, 0, 0, 2, 0, 0]  # good episode of 8 steps (return 2), bad of 2 (0)
    pattern_d = [False] * 7 + [True] + [False, True]
    rewards = np.array([pattern_r * 10])
    dones = np.array([pattern_d * 10])
    s = metrics.summarize(rewards, dones, 100, np.zeros(1), np.full(1, 2.0), 3, 10, seed=0)
    assert s["first_quarter"] == pytest.approx(0.5, abs=0.2) and s["last_quarter"] == pytest.approx(0.5, abs=0.2)
    assert s["few_shot"] == pytest.approx((1 + 0 + 1) / 3)
    assert s["episodes_per_task"] == 20
    with pytest.raises(BenchError, match="at least 4"):
        metrics.summarize(rewards[:, :3], dones[:, :3], 3, np.zeros(1), np.full(1, 2.0), 3, 10, seed=0)
