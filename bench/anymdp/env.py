"""Gymnasium environment `AnyMDP-v0`: one task, one episode at a time.

Importing this module registers the id, so after `import bench.anymdp.env`:
`gymnasium.make("AnyMDP-v0", task=task)`; without the import, gymnasium can load it itself via
`gymnasium.make("bench.anymdp.env:AnyMDP-v0", task=task)`.

Episode semantics are those of `bench.anymdp.solvers` (module docstring). Observations are the
permuted ids `task.permutation[s]`; `info` also carries the inner state for analysis (an agent
must not read it). Every draw comes from `self.np_random`, seeded by `reset(seed=...)`
(Gymnasium's convention: without any seed, the first reset seeds from OS entropy).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from bench.anymdp import portable as pt
from bench.anymdp.task import Task
from bench.errors import BenchError

ENV_ID = "AnyMDP-v0"


class AnyMDPEnv(gymnasium.Env):
    """One AnyMDP task as a Gymnasium env: Discrete(ns) observations, Discrete(na) actions."""

    metadata = {"render_modes": []}

    def __init__(self, task: Task) -> None:
        if not isinstance(task, Task):
            raise BenchError(f"AnyMDPEnv needs a bench.anymdp.Task; got {type(task).__name__}")
        self.task = task
        self.observation_space = spaces.Discrete(task.ns)
        self.action_space = spaces.Discrete(task.na)
        self._cumulative = np.cumsum(task.transition, axis=2)
        self._start_cumulative = np.cumsum(task.start)
        self._state = -1
        self._steps = 0
        self._finished = True
        self._variates: pt.Variates | None = None

    def _observe(self) -> np.int64:
        return np.int64(self.task.permutation[self._state])

    def _info(self) -> dict[str, Any]:
        return {"inner_state": int(self._state), "steps": self._steps}

    def _draw(self, cumulative: np.ndarray) -> int:
        """The first index whose cumulative probability exceeds a uniform draw (never a zero-probability one)."""
        return int(np.searchsorted(cumulative, self._variates.random() * cumulative[-1], side="right"))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self._variates is None or self._variates.rng is not self.np_random:  # (re)seeded
            self._variates = pt.Variates(self.np_random)  # normals computed in blocks, served in order
        self._state = self._draw(self._start_cumulative)
        self._steps = 0
        self._finished = False
        return self._observe(), self._info()

    def step(self, action):
        if self._finished:
            raise BenchError("step() called on a finished episode (or before reset); call reset() first")
        is_int = isinstance(action, (int, np.integer)) and not isinstance(action, bool)
        if not (is_int or (isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu")):
            raise BenchError(f"action must be an int in [0, {self.task.na}); got {action!r}")
        action = int(action)
        if not 0 <= action < self.task.na:
            raise BenchError(f"action must be an int in [0, {self.task.na}); got {action}")
        next_state = self._draw(self._cumulative[self._state, action])
        mean = self.task.reward[self._state, action, next_state]
        std = self.task.reward_noise[self._state, action, next_state]
        reward = float(mean + std * self._variates.standard_normal())
        self._state = next_state
        self._steps += 1
        terminated = bool(self.task.terminal[next_state])
        truncated = self._steps >= self.task.horizon
        self._finished = terminated or truncated
        return self._observe(), reward, terminated, truncated, self._info()


def _register() -> None:
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="bench.anymdp.env:AnyMDPEnv", disable_env_checker=False)


_register()
