"""Exact solvers against brute force, Monte Carlo and each other."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.anymdp.batched import BatchedEnv
from bench.anymdp.sampler import sample_task
from bench.anymdp.solvers import (
    LABEL_GAMMA,
    TaskArrays,
    backward_induction,
    greedy_policy,
    label_policy,
    oracle_returns,
    policy_return,
    random_returns,
    uniform_policy,
    value_iteration,
)
from bench.anymdp.task import Task
from bench.errors import BenchError


def random_task(ns: int, na: int, seed: int, horizon: int = 12, n_terminal: int = 1) -> Task:
    """A dense random task: the last `n_terminal` states terminal, states 0 and 1 start states."""
    rng = np.random.default_rng(seed)
    terminal = np.zeros(ns, dtype=bool)
    terminal[ns - n_terminal :] = True
    transition = rng.random((ns, na, ns)) ** 3
    transition /= transition.sum(axis=2, keepdims=True)
    transition[terminal] = 0.0
    start = np.zeros(ns)
    start[:2] = rng.random(2) + 0.2
    return Task(
        transition=transition,
        reward=rng.normal(size=(ns, na, ns)),
        reward_noise=rng.random((ns, na, ns)),
        start=start / start.sum(),
        terminal=terminal,
        horizon=horizon,
        permutation=rng.permutation(ns),
        kind="test",
    )


def test_value_iteration_equals_best_enumerated_policy():
    task = random_task(4, 3, seed=0, n_terminal=1)
    arrays = TaskArrays.stack([task])
    gamma = 0.9
    q = value_iteration(arrays, gamma)[0]
    live = np.flatnonzero(~task.terminal)
    best = np.full(task.ns, -np.inf)
    for choice in itertools.product(range(task.na), repeat=len(live)):
        actions = np.zeros(task.ns, dtype=int)
        actions[live] = choice
        p_pi = task.transition[np.arange(task.ns), actions]
        r_pi = task.expected_reward[np.arange(task.ns), actions]
        value = np.linalg.solve(np.eye(task.ns) - gamma * p_pi, r_pi)
        best = np.maximum(best, value)
    assert np.allclose(q.max(axis=1)[live], best[live], atol=1e-9)
    assert np.all(q[task.terminal] == 0.0)
    # Bellman optimality of the returned Q
    bellman = task.expected_reward + gamma * task.transition @ q.max(axis=1)
    assert np.allclose(q, bellman, atol=1e-9)


def _brute_force_optimum(task: Task) -> float:
    """Max over all deterministic time-dependent policies, each evaluated by recursion over histories."""
    live = np.flatnonzero(~task.terminal)
    per_step = list(itertools.product(range(task.na), repeat=len(live)))
    r = task.expected_reward

    def value(plan, state, step):
        if step == task.horizon or task.terminal[state]:
            return 0.0
        action = plan[step][int(np.searchsorted(live, state))]
        nxt = sum(task.transition[state, action, s2] * value(plan, s2, step + 1) for s2 in range(task.ns))
        return r[state, action] + nxt

    best = -np.inf
    for plan in itertools.product(per_step, repeat=task.horizon):
        best = max(best, sum(task.start[s] * value(plan, s, 0) for s in range(task.ns) if task.start[s] > 0))
    return best


def test_backward_induction_equals_brute_force_over_time_dependent_policies():
    task = random_task(3, 2, seed=1, horizon=3, n_terminal=1)  # (2 ** 2) ** 3 = 64 plans
    arrays = TaskArrays.stack([task])
    q = backward_induction(arrays)
    assert q.shape == (1, 3, 3, 2)
    expected = _brute_force_optimum(task)
    assert oracle_returns(arrays)[0] == pytest.approx(expected, abs=1e-12)
    assert task.start @ q[0, 2].max(axis=1) == pytest.approx(expected, abs=1e-12)
    assert policy_return(arrays, greedy_policy(q))[0] == pytest.approx(expected, abs=1e-12)


def test_per_task_horizons_and_padding_match_separate_solves():
    tasks = [random_task(5, 3, seed=2, horizon=7), random_task(3, 3, seed=3, horizon=11), sample_task(16, na=3, seed=4)]
    together = TaskArrays.stack(tasks)
    assert together.transition.shape == (3, 16, 3, 16)
    assert together.terminal[0, 5:].all() and together.start[0, 5:].sum() == 0  # padding
    j_opt, j_rand = oracle_returns(together), random_returns(together)
    labels = label_policy(together)
    for b, task in enumerate(tasks):
        alone = TaskArrays.stack([task])
        assert j_opt[b] == pytest.approx(oracle_returns(alone)[0], rel=1e-12, abs=1e-12)
        assert j_rand[b] == pytest.approx(random_returns(alone)[0], rel=1e-12, abs=1e-12)
        assert np.array_equal(labels[b, : task.ns], label_policy(alone)[0])


def test_policy_return_matches_monte_carlo():
    task = random_task(6, 3, seed=5, horizon=15, n_terminal=1)
    rng = np.random.default_rng(6)
    policy = rng.dirichlet(np.ones(3), size=6)[None]  # stochastic stationary policy
    exact = policy_return(TaskArrays.stack([task]), policy)[0]
    copies = 2000
    env = BatchedEnv([task] * copies, seed=7)
    env.reset()
    returns, total, finished = np.zeros(copies), np.zeros(copies), np.zeros(copies, dtype=bool)
    cumulative = np.cumsum(policy[0], axis=1)
    while not finished.all():
        state = env.state
        actions = np.minimum((cumulative[state] <= rng.random(copies)[:, None]).sum(axis=1), 2)
        _, reward, terminated, truncated = env.step(actions)
        total += reward * ~finished
        ended = (terminated | truncated) & ~finished
        returns[ended] = total[ended]
        finished |= ended
    standard_error = returns.std() / np.sqrt(copies)
    assert abs(returns.mean() - exact) < 4 * standard_error


def test_time_dependent_policy_return_matches_monte_carlo():
    task = random_task(5, 2, seed=8, horizon=6, n_terminal=1)
    arrays = TaskArrays.stack([task])
    rng = np.random.default_rng(9)
    policy = rng.dirichlet(np.ones(2), size=(1, 6, 5))  # indexed by steps to go
    exact = policy_return(arrays, policy)[0]
    copies = 4000
    env = BatchedEnv([task] * copies, seed=10)
    env.reset()
    returns, total, finished = np.zeros(copies), np.zeros(copies), np.zeros(copies, dtype=bool)
    while not finished.all():
        steps_to_go = task.horizon - env.episode_step
        probs = policy[0, steps_to_go - 1, env.state]
        actions = (probs[:, 0] <= rng.random(copies)).astype(np.int64)
        _, reward, terminated, truncated = env.step(actions)
        total += reward * ~finished
        ended = (terminated | truncated) & ~finished
        returns[ended] = total[ended]
        finished |= ended
    assert abs(returns.mean() - exact) < 4 * returns.std() / np.sqrt(copies)


def test_oracle_dominates_random_and_label_policies_on_sampled_tasks():
    tasks = [sample_task(ns, seed=seed) for ns in (16, 32) for seed in (11, 12)]
    arrays = TaskArrays.stack(tasks)
    j_opt, j_rand = oracle_returns(arrays), random_returns(arrays)
    j_label = policy_return(arrays, np.eye(arrays.na)[label_policy(arrays)])
    assert np.all(j_opt >= j_rand - 1e-9)
    assert np.all(j_opt >= j_label - 1e-9)
    assert np.all(j_opt > j_rand + 1e-3)  # sampled tasks are non-trivial
    q_label = value_iteration(arrays, LABEL_GAMMA)
    assert np.array_equal(label_policy(arrays), q_label.argmax(axis=2))


def test_bandit_optimum_is_best_arm():
    task = sample_task(1, seed=13)
    arrays = TaskArrays.stack([task])
    means = task.expected_reward[0]
    assert oracle_returns(arrays)[0] == pytest.approx(task.horizon * means.max())
    assert random_returns(arrays)[0] == pytest.approx(task.horizon * means.mean())


def test_uniform_policy_sums_to_one():
    arrays = TaskArrays.stack([random_task(4, 3, seed=14)])
    assert np.allclose(uniform_policy(arrays).sum(axis=2), 1.0)


def test_bad_inputs_raise():
    arrays = TaskArrays.stack([random_task(4, 3, seed=15)])
    with pytest.raises(BenchError, match="at least one task"):
        TaskArrays.stack([])
    with pytest.raises(BenchError, match="na"):
        TaskArrays.stack([random_task(4, 3, seed=15), random_task(4, 2, seed=16)])
    with pytest.raises(BenchError, match="gamma"):
        value_iteration(arrays, 1.0)
    with pytest.raises(BenchError, match="policy must have shape"):
        policy_return(arrays, np.ones((1, 4, 2)))
    with pytest.raises(BenchError, match="max horizon"):
        policy_return(arrays, np.ones((1, 3, 4, 3)) / 3)
