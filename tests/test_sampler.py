"""The AnyMDP sampler: determinism, structure of the arrays, the quality filter, bad input."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from bench.anymdp import sample_task
from bench.anymdp.sampler import MIN_ENTROPY, MIN_GAP, MIN_GINI, START_RANGE, optimal_q, task_quality
from bench.errors import BenchError

CASES = [(8, 5, 0), (16, 5, 1), (16, 3, 2), (32, 5, 3), (64, 5, 4)]


@pytest.fixture(scope="module")
def tasks():
    return [sample_task(ns, na, seed) for ns, na, seed in CASES]


def test_same_arguments_same_task_in_another_process(tasks):
    code = (
        "from bench.anymdp import sample_task\n"
        f"for ns, na, seed in {CASES!r}: print(sample_task(ns, na, seed).fingerprint())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [task.fingerprint() for task in tasks]
    assert sample_task(16, 5, 1) == tasks[1]


def test_seed_ns_and_na_each_change_the_task():
    base = sample_task(16, 5, 0)
    assert len({base, sample_task(16, 5, 1), sample_task(16, 4, 0), sample_task(17, 5, 0)}) == 4


def test_global_numpy_rng_untouched():
    before = np.random.get_state()[1].copy()
    sample_task(16, 5, 7)
    assert np.array_equal(np.random.get_state()[1], before)


def test_arrays_are_well_formed(tasks):
    for task in tasks:
        ns, na = task.ns, task.na
        assert task.transition.shape == task.reward.shape == task.reward_noise.shape == (ns, na, ns)
        sums = task.transition.sum(axis=2)
        assert np.allclose(sums[~task.terminal], 1.0, atol=1e-12)
        assert np.all(task.transition[task.terminal] == 0)
        assert np.all(task.transition >= 0) and np.all(task.reward_noise >= 0)
        assert math.isclose(task.start.sum(), 1.0) and np.all(task.start[START_RANGE:] == 0)
        assert not np.any(task.terminal[task.start > 0])
        assert sorted(task.permutation.tolist()) == list(range(ns))
        low = max(4 * ns, 100)
        assert low <= task.horizon <= math.ceil(max(min(8 * ns, 500), low + 1))
        # bands reach back at most ns // 2 + 1 states; the last state never loops on itself
        back = np.arange(ns)[:, None] - np.arange(ns)[None, :] > max(2, ns // 2 + 1)
        assert np.all(task.transition.sum(axis=1)[back] == 0)
        assert np.all(task.transition[ns - 1, :, ns - 1] == 0)


def test_arrival_at_terminals_carries_no_position_noise(tasks):
    """noise(s, a, s') = position part (>= 0, zero on terminal s') + (s, a) part."""
    for task in tasks:
        smallest = task.reward_noise.min(axis=2)
        for terminal_state in np.flatnonzero(task.terminal):
            assert np.array_equal(task.reward_noise[:, :, terminal_state], smallest)


def test_quality_filter_holds(tasks):
    for task in tasks:
        quality = task_quality(task)
        assert quality.gap >= MIN_GAP and quality.gini > MIN_GINI and quality.entropy > MIN_ENTROPY


def test_optimal_q_is_the_bellman_fixed_point(tasks):
    task = tasks[1]
    q = optimal_q(task.transition, task.expected_reward, 0.99)
    backup = task.expected_reward + 0.99 * task.transition @ q.max(axis=1)
    assert np.allclose(q, backup, atol=1e-9)
    assert np.all(q[task.terminal] == 0)


def test_observation_ids_do_not_leak_value():
    """Inner index predicts value; the observation id must not (pooled over many tasks)."""
    inner, observed, value_rank = [], [], []
    for seed in range(60):
        task = sample_task(16, 5, 1000 + seed)
        values = optimal_q(task.transition, task.expected_reward, 0.99).max(axis=1)
        inner += list(range(task.ns))
        observed += task.permutation.tolist()
        value_rank += stats.rankdata(values).tolist()
    assert stats.spearmanr(inner, value_rank).statistic > 0.3  # the signal a leak would carry
    assert stats.spearmanr(observed, value_rank).pvalue > 1e-3


def test_bandit():
    task = sample_task(1, 5, 3)
    assert (task.kind, task.ns, task.horizon) == ("bandit", 1, 1)
    assert np.all(task.transition == 1) and not task.terminal.any()
    assert np.std(task.reward) > 0.01
    ratio = task.reward_noise / task.reward
    assert np.allclose(ratio, ratio.flat[0]) and 0 <= ratio.flat[0] <= 0.3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ns": 0, "seed": 0}, "ns"),
        ({"ns": 5, "seed": 0}, "ns must be 1"),
        ({"ns": True, "seed": 0}, "ns"),
        ({"ns": 16.0, "seed": 0}, "ns"),
        ({"ns": 16, "na": 1, "seed": 0}, "na"),
        ({"ns": 16, "seed": None}, "seed"),
        ({"ns": 16, "seed": "3"}, "seed"),
        ({"ns": 16, "seed": True}, "seed"),
        ({"ns": 16, "seed": 2.0}, "seed"),
        ({"ns": 16, "seed": -1}, "seed"),
    ],
)
def test_bad_input_raises(kwargs, match):
    with pytest.raises(BenchError, match=match):
        sample_task(**kwargs)
