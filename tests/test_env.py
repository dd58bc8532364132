"""AnyMDPEnv and BatchedEnv: Gymnasium conformance, reproducibility and sampling statistics."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy import stats

import bench.anymdp.env  # noqa: F401  (registers AnyMDP-v0)
from bench.anymdp.batched import BatchedEnv
from bench.anymdp.env import AnyMDPEnv
from bench.anymdp.sampler import sample_task
from bench.anymdp.solvers import TaskArrays, label_policy, random_returns
from bench.anymdp.task import Task
from bench.errors import BenchError

P_MIN = 1e-4  # fixed seeds: a correct sampler passes; a wrong table fails by many orders of magnitude


def random_task(ns: int, na: int, seed: int, horizon: int = 20, n_terminal: int = 1, sparse: bool = True) -> Task:
    """A random task with some zero-probability transitions; the last `n_terminal` states terminal."""
    rng = np.random.default_rng(seed)
    terminal = np.zeros(ns, dtype=bool)
    terminal[ns - n_terminal :] = True
    transition = rng.random((ns, na, ns)) * (rng.random((ns, na, ns)) < 0.6 if sparse else 1.0)
    transition[:, :, 0] += 0.05  # every row has mass
    transition /= transition.sum(axis=2, keepdims=True)
    transition[terminal] = 0.0
    start = np.zeros(ns)
    start[:2] = [0.3, 0.7]
    return Task(
        transition=transition,
        reward=rng.normal(size=(ns, na, ns)),
        reward_noise=rng.random((ns, na, ns)) + 0.1,
        start=start,
        terminal=terminal,
        horizon=horizon,
        permutation=rng.permutation(ns),
        kind="test",
    )


def transition_chi2(task: Task, counts: np.ndarray) -> float:
    """p-value of a pooled chi-square test of observed (s, a, s') counts against task.transition."""
    statistic, dof = 0.0, 0
    for s in np.flatnonzero(~task.terminal):
        for a in range(task.na):
            n = counts[s, a].sum()
            p = task.transition[s, a]
            assert counts[s, a][p == 0].sum() == 0  # never a zero-probability successor
            support = p > 0
            expected = n * p[support]
            statistic += ((counts[s, a][support] - expected) ** 2 / expected).sum()
            dof += support.sum() - 1
    return stats.chi2.sf(statistic, dof)


def reward_p_values(task: Task, sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """p-values of the per-(s, a, s') reward means and spreads against task.reward / reward_noise.

    `sums` and `squares` accumulate r - R and (r - R)^2 per cell. Means: sum of squared z-scores
    (chi-square, one dof per visited cell). Spread: sum of (r - R)^2 / noise^2 over all rewards
    (chi-square with one dof per reward).
    """
    seen = counts > 0
    z = sums[seen] / counts[seen] / (task.reward_noise[seen] / np.sqrt(counts[seen]))
    spread = (squares[seen] / task.reward_noise[seen] ** 2).sum()
    return stats.chi2.sf((z**2).sum(), seen.sum()), stats.chi2.sf(spread, counts.sum())


def test_check_env_and_make():
    task = sample_task(16, seed=0)
    check_env(AnyMDPEnv(task), skip_render_check=True)
    env = gymnasium.make("AnyMDP-v0", task=task)
    obs, info = env.reset(seed=3)
    assert env.observation_space == gymnasium.spaces.Discrete(16)
    assert env.action_space == gymnasium.spaces.Discrete(5)
    assert obs == task.permutation[info["inner_state"]]


def test_reset_seed_reproducible():
    task = random_task(6, 3, seed=1, horizon=50)

    def rollout(seed):
        env = AnyMDPEnv(task)
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for t in range(40):
            obs, reward, terminated, truncated, _ = env.step(t % 3)
            trace += [obs, reward]
            if terminated or truncated:
                obs, _ = env.reset()
                trace.append(obs)
        return trace

    assert rollout(5) == rollout(5)
    assert rollout(5) != rollout(6)


def test_env_statistics_match_task():
    task = random_task(4, 2, seed=2, horizon=10_000, n_terminal=0)
    env = AnyMDPEnv(task)
    env.reset(seed=3)
    rng = np.random.default_rng(4)
    counts, sums, squares = np.zeros((4, 2, 4)), np.zeros((4, 2, 4)), np.zeros((4, 2, 4))
    state = env.unwrapped._state
    for _ in range(8000):
        action = int(rng.integers(2))
        obs, reward, _, _, info = env.step(action)
        nxt = info["inner_state"]
        assert obs == task.permutation[nxt]
        counts[state, action, nxt] += 1
        sums[state, action, nxt] += reward - task.reward[state, action, nxt]
        squares[state, action, nxt] += (reward - task.reward[state, action, nxt]) ** 2
        state = nxt
    assert transition_chi2(task, counts) > P_MIN
    assert min(reward_p_values(task, sums, squares, counts)) > P_MIN
    assert counts.sum() == 8000


def test_terminated_and_truncated():
    task = random_task(4, 2, seed=5, horizon=3, n_terminal=1)
    env = AnyMDPEnv(task)
    env.reset(seed=0)
    for _ in range(50):
        steps = 0
        while True:
            _, _, terminated, truncated, info = env.step(0)
            steps += 1
            assert terminated == bool(task.terminal[info["inner_state"]])
            assert truncated == (steps == 3)
            if terminated or truncated:
                break
        with pytest.raises(BenchError, match="finished episode"):
            env.step(0)
        env.reset()


def test_env_bad_inputs():
    task = random_task(4, 2, seed=6)
    env = AnyMDPEnv(task)
    with pytest.raises(BenchError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for bad in (2, -1, 1.5, "0", True):
        with pytest.raises(BenchError, match=r"action must be an int in \[0, 2\)"):
            env.step(bad)
    with pytest.raises(BenchError, match="Task"):
        AnyMDPEnv("not a task")


def test_batched_statistics_match_task_and_single_env():
    tasks = [random_task(5, 3, seed=7, horizon=25), random_task(3, 3, seed=8, horizon=9, n_terminal=0)]
    env = BatchedEnv(tasks * 100, seed=9)
    obs = env.reset()
    rng = np.random.default_rng(10)
    counts = [np.zeros((t.ns, 3, t.ns)) for t in tasks]
    sums = [np.zeros((t.ns, 3, t.ns)) for t in tasks]
    squares = [np.zeros((t.ns, 3, t.ns)) for t in tasks]
    episode_return, returns = np.zeros(200), [[], []]
    for _ in range(300):
        assert np.array_equal(obs, env.observe(env.state))
        actions = rng.integers(0, 3, 200)
        state = env.state.copy()
        obs, reward, terminated, truncated = env.step(actions)
        assert np.array_equal(env.prev_state, state)
        episode_return += reward
        for b in range(200):
            k = b % 2
            assert env.next_state[b] < tasks[k].ns and obs[b] < tasks[k].ns  # padding never reached
            cell = state[b], actions[b], env.next_state[b]
            counts[k][cell] += 1
            sums[k][cell] += reward[b] - tasks[k].reward[cell]
            squares[k][cell] += (reward[b] - tasks[k].reward[cell]) ** 2
            assert terminated[b] == tasks[k].terminal[env.next_state[b]]
            if terminated[b] or truncated[b]:
                returns[k].append(episode_return[b])
                episode_return[b] = 0.0
                assert env.episode_step[b] == 0 and tasks[k].start[env.state[b]] > 0
    for k, task in enumerate(tasks):
        assert transition_chi2(task, counts[k]) > P_MIN
        assert min(reward_p_values(task, sums[k], squares[k], counts[k])) > P_MIN
        exact = random_returns(TaskArrays.stack([task]))[0]
        sample = np.array(returns[k])
        assert abs(sample.mean() - exact) < 4 * sample.std() / np.sqrt(len(sample))
    # the single env, same task, same random policy: the same return distribution
    single = AnyMDPEnv(tasks[0])
    single.reset(seed=11)
    single_returns, total = [], 0.0
    while len(single_returns) < 2000:
        _, reward, terminated, truncated, _ = single.step(int(rng.integers(3)))
        total += reward
        if terminated or truncated:
            single_returns.append(total)
            total = 0.0
            single.reset()
    assert stats.ttest_ind(returns[0], single_returns, equal_var=False).pvalue > P_MIN


def test_batched_reproducible_and_labels():
    tasks = [sample_task(16, seed=s) for s in (20, 21, 22)]

    def rollout(seed):
        env = BatchedEnv(tasks, seed=seed)
        trace = [env.reset()]
        for t in range(600):
            trace += list(env.step(np.full(3, t % 5)))
        return np.concatenate([np.asarray(x, dtype=float) for x in trace]), env

    first, env = rollout(1)
    second, _ = rollout(1)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, rollout(2)[0])
    labels = label_policy(TaskArrays.stack(tasks))
    assert np.array_equal(env.labels(), labels[np.arange(3), env.state])


def test_batched_bad_inputs():
    env = BatchedEnv([random_task(4, 2, seed=12)] * 3, seed=0)
    with pytest.raises(BenchError, match="reset"):
        env.step(np.zeros(3, dtype=int))
    env.reset()
    with pytest.raises(BenchError, match=r"shape \(3,\)"):
        env.step(np.zeros(2, dtype=int))
    with pytest.raises(BenchError, match="int array"):
        env.step(np.zeros(3))
    with pytest.raises(BenchError, match=r"\[0, 2\)"):
        env.step(np.array([0, 2, 1]))
    with pytest.raises(BenchError, match="seed"):
        BatchedEnv([random_task(4, 2, seed=12)], seed=None)
