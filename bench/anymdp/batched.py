"""`BatchedEnv`: B AnyMDP tasks stepped at once in vectorised NumPy, with per-task auto-reset.

Episode semantics are those of `bench.anymdp.solvers` (module docstring). Tasks of mixed `ns`
are padded to the largest. Sampling uses one uniform draw u per task per step and a precomputed
row of cumulative probabilities per (task, state, action): the next state is the number of
cumulative entries <= u, i.e. a searchsorted done for all tasks at once by gathering their rows
and counting (no Python loop over tasks). (One global `np.searchsorted` over all rows laid end
to end was 4x slower: its binary search misses the cache on a 40 MB array.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.anymdp import portable as pt
from bench.anymdp.solvers import TaskArrays, label_policy
from bench.anymdp.task import Task
from bench.errors import BenchError

RANDOM_BLOCK = 256
"""Steps of random numbers drawn per call to the generator."""


def _cumulative_rows(probabilities: np.ndarray) -> np.ndarray:
    """Rows (n, k) of probabilities -> normalised cumulative rows (n, k) for inverse-CDF draws.

    From each row's last positive entry on the value is exactly 1, so for u in [0, 1) the first
    entry above u is always an entry with positive probability. All-zero rows map to entry 0.
    """
    k = probabilities.shape[1]
    positive = probabilities > 0
    last = np.where(positive.any(axis=1), k - 1 - np.argmax(positive[:, ::-1], axis=1), 0)
    total = probabilities.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(probabilities, axis=1) / np.where(total > 0, total, 1.0)
    cumulative[np.arange(k)[None, :] >= last[:, None]] = 1.0
    return cumulative


class BatchedEnv:
    """B tasks stepped together; each task restarts automatically when its episode ends.

    After `step`, `prev_state` and `next_state` hold the inner states before and after the
    transition (before auto-reset), `next_obs` the observation of `next_state`, and `state` the
    current inner state (a new episode's start state where one ended). `labels()` gives the DPD
    label action for the current states. Inner states are for data synthesis and analysis only.
    """

    def __init__(self, tasks: Sequence[Task], seed: int) -> None:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise BenchError(f"seed must be an int; got {seed!r}")
        self.tasks = list(tasks)
        self.arrays = TaskArrays.stack(self.tasks)
        self.rng = np.random.default_rng(int(seed))
        batch, ns, na = self.arrays.batch, self.arrays.ns, self.arrays.na
        self.batch, self.ns, self.na = batch, ns, na
        full_transition = np.zeros((batch, ns, na, ns))
        mean = np.zeros((batch, ns, na, ns))
        noise = np.zeros((batch, ns, na, ns))
        permutation = np.tile(np.arange(ns), (batch, 1))
        for b, task in enumerate(self.tasks):
            n = task.ns
            full_transition[b, :n, :, :n] = task.transition
            mean[b, :n, :, :n] = task.reward
            noise[b, :n, :, :n] = task.reward_noise
            permutation[b, :n] = task.permutation
        self._transition_cdf = _cumulative_rows(full_transition.reshape(-1, ns))
        self._start_cdf = _cumulative_rows(self.arrays.start)
        self._reward_mean = mean.ravel()
        self._reward_std = noise.ravel()
        self._terminal = self.arrays.terminal.ravel()
        self._permutation = permutation.ravel()
        self._task_offset = np.arange(batch) * ns
        self._batch_index = np.arange(batch)
        self._labels: np.ndarray | None = None
        self.horizon = self.arrays.horizon
        self.state = np.zeros(batch, dtype=np.int64)
        self.episode_step = np.zeros(batch, dtype=np.int64)
        self.prev_state = np.zeros(batch, dtype=np.int64)
        self.next_state = np.zeros(batch, dtype=np.int64)
        self.next_obs = np.zeros(batch, dtype=np.int64)
        self._started = False
        self._uniform = np.empty((0, 2, batch))
        self._normal = np.empty((0, batch))
        self._cursor = 0

    def _draws(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This step's randomness: uniforms for the transition and a restart, normals for reward (each (B,)).

        Drawn from `rng` in blocks of RANDOM_BLOCK steps (fewer calls; same stream for a seed).
        """
        if self._cursor == self._uniform.shape[0]:
            self._uniform = self.rng.random((RANDOM_BLOCK, 2, self.batch))
            self._normal = pt.standard_normal(self.rng, (RANDOM_BLOCK, self.batch))
            self._cursor = 0
        uniform, normal = self._uniform[self._cursor], self._normal[self._cursor]
        self._cursor += 1
        return uniform[0], uniform[1], normal

    @staticmethod
    def _inverse_cdf(cdf: np.ndarray, rows: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        """Per row, the index of the first cumulative entry above its uniform draw."""
        return np.argmax(np.take(cdf, rows, axis=0) > uniform[:, None], axis=1)

    def observe(self, states: np.ndarray) -> np.ndarray:
        """Observation ids (B,) of inner states (B,)."""
        return self._permutation[self._task_offset + states]

    def reset(self) -> np.ndarray:
        """Start a new episode in every task; returns the observations (B,)."""
        _, restart, _ = self._draws()
        self.state = self._inverse_cdf(self._start_cdf, self._batch_index, restart)
        self.episode_step[:] = 0
        self._started = True
        return self.observe(self.state)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Act in every task; returns obs (B,), reward (B,), terminated (B,), truncated (B,).

        Where an episode ended, `obs` is already the next episode's first observation.
        """
        if not self._started:
            raise BenchError("BatchedEnv.step() called before reset(); call reset() first")
        actions = np.asarray(actions)
        if actions.shape != (self.batch,) or actions.dtype.kind not in "iu":
            raise BenchError(
                f"actions must be an int array of shape ({self.batch},); got {actions.dtype} {actions.shape}"
            )
        if actions.min() < 0 or actions.max() >= self.na:
            raise BenchError(f"actions must lie in [0, {self.na}); got values in [{actions.min()}, {actions.max()}]")
        rows = (self._task_offset + self.state) * self.na + actions
        uniform, restart, normal = self._draws()
        next_state = self._inverse_cdf(self._transition_cdf, rows, uniform)
        entry = rows * self.ns + next_state
        reward = self._reward_mean[entry] + self._reward_std[entry] * normal
        terminated = self._terminal[self._task_offset + next_state]
        self.episode_step += 1
        truncated = self.episode_step >= self.horizon
        self.prev_state, self.next_state = self.state, next_state
        self.next_obs = self.observe(next_state)
        done = terminated | truncated
        state = next_state
        if done.any():
            ended = np.flatnonzero(done)
            state = next_state.copy()
            state[ended] = self._inverse_cdf(self._start_cdf, ended, restart[ended])
            self.episode_step[ended] = 0
        self.state = state
        return self.observe(state), reward, terminated, truncated

    def labels(self) -> np.ndarray:
        """The DPD label action (B,) for the current states (`solvers.label_policy`, computed once)."""
        if self._labels is None:
            self._labels = label_policy(self.arrays).ravel()
        return self._labels[self._task_offset + self.state]
