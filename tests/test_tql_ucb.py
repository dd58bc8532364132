"""TQL-UCB: learning on easy tasks, observation-only behaviour, update arithmetic, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.anymdp.batched import BatchedEnv
from bench.anymdp.sampler import sample_task
from bench.anymdp.solvers import TaskArrays, oracle_returns, random_returns
from bench.anymdp.tql_ucb import TQLUCB, TQLUCBConfig
from bench.errors import BenchError
from bench.metrics import normalized


def run(tasks, steps: int, seed: int) -> tuple[list[tuple[int, int, float]], list[np.ndarray]]:
    """Step TQL-UCB on `tasks`; returns (step, task, episode return) per finished episode and the actions."""
    env = BatchedEnv(tasks, seed=seed)
    agent = TQLUCB(len(tasks), max(t.ns for t in tasks), tasks[0].na)
    rng = np.random.default_rng(seed + 1)
    obs = env.reset()
    total = np.zeros(len(tasks))
    episodes, actions_taken = [], []
    for step in range(steps):
        actions = agent.act(obs, rng)
        next_obs, reward, terminated, truncated = env.step(actions)
        agent.update(obs, actions, reward, env.next_obs, terminated)
        total += reward
        for b in np.flatnonzero(terminated | truncated):
            episodes.append((step, b, total[b]))
            total[b] = 0.0
        actions_taken.append(actions)
        obs = next_obs
    return episodes, actions_taken


def test_score_rises_with_experience_on_easy_tasks():
    tasks = [sample_task(16, seed=100 + i) for i in range(24)]
    arrays = TaskArrays.stack(tasks)
    j_opt, j_rand = oracle_returns(arrays), random_returns(arrays)
    steps = 4000
    episodes, _ = run(tasks, steps, seed=0)
    early = [normalized(r, j_rand[b], j_opt[b]) for step, b, r in episodes if step < steps // 4]
    late = [normalized(r, j_rand[b], j_opt[b]) for step, b, r in episodes if step >= 3 * steps // 4]
    early_mean, late_mean = np.nanmean(early), np.nanmean(late)
    assert late_mean > early_mean + 0.1
    # well above random's 0: over 120 tasks of ns = 16 the last-third mean is 0.43-0.48 (+-0.05),
    # and these 24 tasks sit low in that spread
    assert late_mean > 0.15


def test_acts_on_observations_only():
    """Relabelling the observation ids leaves every decision unchanged."""
    task = sample_task(16, seed=7)
    relabelled = dataclasses.replace(task, permutation=np.random.default_rng(8).permutation(16))
    assert not np.array_equal(relabelled.permutation, task.permutation)
    _, actions = run([task] * 4, 500, seed=3)
    _, actions_relabelled = run([relabelled] * 4, 500, seed=3)
    assert np.array_equal(np.array(actions), np.array(actions_relabelled))


def test_untried_actions_first_and_update_arithmetic():
    agent = TQLUCB(2, 3, 4, TQLUCBConfig(gamma=0.5, lr_horizon=1.0, min_lr=0.05))
    rng = np.random.default_rng(0)
    obs = np.array([0, 2])
    tried = [set(), set()]
    for _ in range(4):
        actions = agent.act(obs, rng)
        for b in range(2):
            assert actions[b] not in tried[b]
            tried[b].add(int(actions[b]))
        agent.update(obs, actions, np.array([1.0, 2.0]), np.array([1, 1]), np.array([False, True]))
    assert tried == [{0, 1, 2, 3}, {0, 1, 2, 3}]
    # first visit: alpha = (H + 1) / (H + 1) = 1, and Q(next) is still 0, so Q = r
    assert np.allclose(agent.q[0, 0], 1.0) and np.allclose(agent.q[1, 2], 2.0)
    agent.q[0, 1] = 10.0
    agent.update(np.array([0, 2]), np.array([0, 0]), np.array([1.0, 2.0]), np.array([1, 1]), np.array([False, True]))
    # second visit: alpha = 2 / 3; bootstrap 0.5 * 10 only where not terminated
    assert agent.q[0, 0, 0] == pytest.approx(1.0 + 2 / 3 * (1.0 + 5.0 - 1.0))
    assert agent.q[1, 2, 0] == pytest.approx(2.0)
    assert agent.visits[0, 0, 0] == 2 and agent.visits.sum() == 10


def test_bad_inputs_raise():
    agent = TQLUCB(2, 3, 4)
    rng = np.random.default_rng(0)
    with pytest.raises(BenchError, match=r"obs must lie in \[0, 3\)"):
        agent.act(np.array([0, 3]), rng)
    with pytest.raises(BenchError, match=r"shape \(2,\)"):
        agent.act(np.array([0]), rng)
    with pytest.raises(BenchError, match="actions"):
        agent.update(np.array([0, 1]), np.array([0, 4]), np.zeros(2), np.array([0, 1]), np.zeros(2, dtype=bool))
    with pytest.raises(BenchError, match="n_obs"):
        TQLUCB(2, 0, 4)
    with pytest.raises(BenchError, match="gamma"):
        TQLUCBConfig(gamma=1.0)
    with pytest.raises(BenchError, match="min_lr"):
        TQLUCBConfig(min_lr=0.0)
