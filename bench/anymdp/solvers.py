"""Exact solvers for tabular AnyMDP tasks, batched over tasks.

Episode semantics (shared by `AnyMDPEnv`, `BatchedEnv` and every solver here):

- the episode starts in s0 ~ `start`;
- each step the agent picks a, the task moves to s' ~ P[s, a] and pays r ~ N(R[s, a, s'],
  noise[s, a, s']) (so the expected reward of (s, a) is sum_s' P[s, a, s'] R[s, a, s']);
- the episode is *terminated* when s' is terminal (the reward of entering it is collected) and
  *truncated* when the step count reaches the task's horizon; the return is the undiscounted sum
  of rewards.

Tasks of different `ns` are padded to the largest: padded states are terminal, unreachable and
never start states, so they change no value. All solvers compute in float64 with
`bench.anymdp.portable`'s arithmetic, so their results have the same bits on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.anymdp import portable as pt
from bench.anymdp.task import Task
from bench.errors import BenchError

LABEL_GAMMA = 0.994
"""Discount of the DPD label oracle (the reference code's training labels)."""


@dataclass(frozen=True)
class TaskArrays:
    """B tasks' solver tables, padded to a common `ns` (see the module docstring)."""

    transition: np.ndarray
    """(B, ns, na, ns) P(s' | s, a); all-zero rows for terminal and padded states."""
    reward: np.ndarray
    """(B, ns, na) expected immediate reward of (s, a); zero for terminal and padded states."""
    terminal: np.ndarray
    """(B, ns) bool: entering the state ends the episode (padded states are terminal)."""
    start: np.ndarray
    """(B, ns) start-state distribution."""
    horizon: np.ndarray
    """(B,) int64 episode length limit of each task."""
    n_states: np.ndarray
    """(B,) int64 real state count of each task (states at and beyond it are padding)."""

    @classmethod
    def stack(cls, tasks: Sequence[Task]) -> TaskArrays:
        """Stack tasks with the same `na` (any `ns`; smaller ones are padded)."""
        if not tasks:
            raise BenchError("TaskArrays.stack needs at least one task; got an empty sequence")
        na_values = sorted({task.na for task in tasks})
        if len(na_values) != 1:
            raise BenchError(f"tasks must share one action count na; got na values {na_values}")
        batch, ns, na = len(tasks), max(task.ns for task in tasks), na_values[0]
        transition = np.zeros((batch, ns, na, ns))
        reward = np.zeros((batch, ns, na))
        terminal = np.ones((batch, ns), dtype=bool)
        start = np.zeros((batch, ns))
        for b, task in enumerate(tasks):
            n = task.ns
            live = ~task.terminal
            transition[b, :n, :, :n] = task.transition * live[:, None, None]
            reward[b, :n] = task.expected_reward * live[:, None]
            terminal[b, :n] = task.terminal
            start[b, :n] = task.start
        horizon = np.array([task.horizon for task in tasks], dtype=np.int64)
        n_states = np.array([task.ns for task in tasks], dtype=np.int64)
        return cls(transition, reward, terminal, start, horizon, n_states)

    @property
    def batch(self) -> int:
        return self.transition.shape[0]

    @property
    def ns(self) -> int:
        return self.transition.shape[1]

    @property
    def na(self) -> int:
        return self.transition.shape[2]


def _backup(arrays: TaskArrays, value: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Q = R + gamma * P V for V (B, ns): (B, ns, na). Terminal states' V is ignored (rows are zero)."""
    return arrays.reward + gamma * pt.dot(arrays.transition, value[:, None, None, :])


def _policy_value(arrays: TaskArrays, actions: np.ndarray, gamma: float) -> np.ndarray:
    """Exact discounted value (B, ns) of a deterministic stationary policy (one batched solve)."""
    batch, ns, na = arrays.batch, arrays.ns, arrays.na
    rows = (np.arange(batch * ns) * na).reshape(batch, ns) + actions
    p_pi = arrays.transition.reshape(batch * ns * na, ns)[rows]
    r_pi = arrays.reward.reshape(batch * ns * na)[rows]
    return pt.solve_dominant(np.eye(ns)[None] - gamma * p_pi, r_pi)


def value_iteration(arrays: TaskArrays, gamma: float, tol: float = 1e-10, max_iter: int = 10_000) -> np.ndarray:
    """Optimal discounted Q (B, ns, na) for 0 <= gamma < 1; terminal states have value 0.

    Solved by Howard's policy iteration (each evaluation an exact batched linear solve; a policy
    changes only where another action is better by more than `tol`), then polished with Bellman
    backups until the largest change is below `tol` (at most `max_iter` backups).
    """
    if not 0.0 <= gamma < 1.0:
        raise BenchError(f"gamma must be in [0, 1) for value_iteration; got {gamma}")
    if tol <= 0:
        raise BenchError(f"tol must be positive; got {tol}")
    actions = arrays.reward.argmax(axis=2)
    for _ in range(arrays.ns * arrays.na + 1):  # policy iteration stops long before this bound
        q = _backup(arrays, _policy_value(arrays, actions, gamma), gamma)
        current = np.take_along_axis(q, actions[:, :, None], axis=2)[:, :, 0]
        better = q.max(axis=2) > current + tol
        if not better.any():
            break
        actions = np.where(better, q.argmax(axis=2), actions)
    for _ in range(max_iter):
        value = q.max(axis=2)
        q_next = _backup(arrays, value, gamma)
        change = np.abs(q_next - q).max()
        q = q_next
        if change < tol:
            break
    return q


def _backward_sweep(arrays: TaskArrays):
    """Yield (h, Q_h) for h = 1..max horizon: Q_h (B, ns, na) is the optimum with h steps to go."""
    value = np.zeros((arrays.batch, arrays.ns))
    for steps_to_go in range(1, int(arrays.horizon.max()) + 1):
        q = _backup(arrays, value)
        yield steps_to_go, q
        value = q.max(axis=2)


def backward_induction(arrays: TaskArrays) -> np.ndarray:
    """Finite-horizon optimal Q (B, H, ns, na), H = max horizon; `Q[:, h]` has h + 1 steps to go.

    Entries with h + 1 > a task's horizon are never reached by that task's episodes.
    """
    out = np.empty((arrays.batch, int(arrays.horizon.max()), arrays.ns, arrays.na))
    for steps_to_go, q in _backward_sweep(arrays):
        out[:, steps_to_go - 1] = q
    return out


def oracle_returns(arrays: TaskArrays) -> np.ndarray:
    """J_opt (B,): the finite-horizon optimal expected return from the start distribution."""
    j_opt = np.zeros(arrays.batch)
    for steps_to_go, q in _backward_sweep(arrays):
        done = arrays.horizon == steps_to_go
        if done.any():
            j_opt[done] = pt.dot(arrays.start[done], q[done].max(axis=2))
    return j_opt


def policy_return(arrays: TaskArrays, policy: np.ndarray) -> np.ndarray:
    """Exact expected episode return (B,) of a policy, by forward propagation of the state distribution.

    `policy` holds action probabilities: stationary (B, ns, na), or time-dependent (B, H, ns, na)
    indexed by steps to go (`policy[:, h]` acts with h + 1 steps left, as `backward_induction`),
    with H >= each task's horizon. Probability mass that enters a terminal state leaves.
    """
    policy = np.asarray(policy, dtype=np.float64)
    batch, ns, na = arrays.batch, arrays.ns, arrays.na
    stationary = policy.shape == (batch, ns, na)
    if not stationary and not (policy.ndim == 4 and policy.shape[0] == batch and policy.shape[2:] == (ns, na)):
        raise BenchError(
            f"policy must have shape {(batch, ns, na)} or (B, H, ns, na) with B={batch}; got {policy.shape}"
        )
    if not stationary and policy.shape[1] < arrays.horizon.max():
        raise BenchError(
            f"time-dependent policy needs H >= max horizon {arrays.horizon.max()}; got H={policy.shape[1]}"
        )
    live = ~arrays.terminal
    if stationary:
        p_pi = pt.dot(policy[..., None], arrays.transition, axis=2) * live[:, None, :]
        r_pi = pt.dot(policy, arrays.reward)
    distribution = arrays.start * live
    total = np.zeros(batch)
    index = np.arange(batch)
    for step in range(int(arrays.horizon.max())):
        active = arrays.horizon > step
        if not stationary:
            pi = policy[index, np.maximum(arrays.horizon - 1 - step, 0)]
            p_pi = pt.dot(pi[..., None], arrays.transition, axis=2) * live[:, None, :]
            r_pi = pt.dot(pi, arrays.reward)
        total += active * pt.dot(distribution, r_pi)
        distribution = pt.dot(distribution[:, :, None], p_pi, axis=1)
    return total


def uniform_policy(arrays: TaskArrays) -> np.ndarray:
    """The uniform-random stationary policy (B, ns, na)."""
    return np.full((arrays.batch, arrays.ns, arrays.na), 1.0 / arrays.na)


def greedy_policy(q: np.ndarray) -> np.ndarray:
    """One-hot action probabilities of argmax over the last axis (first maximum on ties)."""
    return np.eye(q.shape[-1])[q.argmax(axis=-1)]


def random_returns(arrays: TaskArrays) -> np.ndarray:
    """J_rand (B,): the expected return of the uniform-random policy."""
    return policy_return(arrays, uniform_policy(arrays))


def label_policy(arrays: TaskArrays) -> np.ndarray:
    """The DPD label oracle's action per state (B, ns) int64: greedy in value_iteration(LABEL_GAMMA)."""
    return value_iteration(arrays, LABEL_GAMMA).argmax(axis=2)
