"""TQL-UCB: tabular Q-learning with an upper-confidence exploration bonus, batched over tasks.

The classic-RL baseline of the benchmark and a behavior "learner" for DPD data synthesis. It sees
only what an in-context learner sees: observation ids (the permuted state ids), its own actions,
rewards and episode ends; never the task tables or the inner state order.

Algorithm (per task, independently; Watkins' Q-learning with count-based bonuses in the spirit of
UCB-Hoeffding Q-learning, Jin et al. 2018, "Is Q-learning provably efficient?"):

- act: a = argmax_a Q(o, a) + bonus(o, a); an action never tried in o is taken first (ties
  between untried or equal actions broken uniformly at random);
  bonus(o, a) = c * sigma * sqrt(log(1 + N(o)) / N(o, a)), sigma the running standard deviation
  of the task's rewards (at least `min_scale`), N visit counts;
- update on (o, a, r, o', terminated): with n = N(o, a) after counting this visit,
  alpha = max((H + 1) / (H + n), alpha_min), Q(o, a) += alpha * (r + gamma * max_a' Q(o', a')
  * (1 - terminated) - Q(o, a)). Truncation is not termination: o' must be the successor's
  observation even where the environment then restarts (`BatchedEnv.next_obs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.anymdp import portable as pt
from bench.errors import BenchError


@dataclass(frozen=True)
class TQLUCBConfig:
    """Hyper-parameters of TQL-UCB (defaults used by the benchmark's baseline)."""

    gamma: float = 0.99
    """Discount of the Q-learning target."""
    bonus: float = 3.0
    """c: scale of the exploration bonus c * sigma * sqrt(log(1 + N(o)) / N(o, a))."""
    lr_horizon: float = 10.0
    """H of the learning-rate schedule alpha_n = (H + 1) / (H + n) (Jin et al. 2018)."""
    min_lr: float = 0.05
    """alpha_min: floor of the learning rate, so the values keep tracking noisy rewards."""
    min_scale: float = 0.01
    """Floor of the reward scale sigma used by the bonus."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma < 1.0:
            raise BenchError(f"gamma must be in [0, 1); got {self.gamma}")
        for name in ("bonus", "lr_horizon", "min_scale"):
            if getattr(self, name) < 0 or (name != "bonus" and getattr(self, name) == 0):
                raise BenchError(f"{name} must be positive (bonus may be 0); got {getattr(self, name)}")
        if not 0.0 < self.min_lr <= 1.0:
            raise BenchError(f"min_lr must be in (0, 1]; got {self.min_lr}")


class TQLUCB:
    """B independent tabular learners over `n_obs` observation ids and `na` actions."""

    def __init__(self, n_tasks: int, n_obs: int, na: int, config: TQLUCBConfig | None = None) -> None:
        for name, value in (("n_tasks", n_tasks), ("n_obs", n_obs), ("na", na)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise BenchError(f"{name} must be a positive int; got {value!r}")
        self.config = config or TQLUCBConfig()
        self.n_tasks, self.n_obs, self.na = int(n_tasks), int(n_obs), int(na)
        self.q = np.zeros((n_tasks, n_obs, na))
        self.visits = np.zeros((n_tasks, n_obs, na), dtype=np.int64)
        self._reward_count = np.zeros(n_tasks)
        self._reward_mean = np.zeros(n_tasks)
        self._reward_m2 = np.zeros(n_tasks)
        self._index = np.arange(n_tasks)

    def _check(self, name: str, values: np.ndarray, upper: int) -> np.ndarray:
        values = np.asarray(values)
        if values.shape != (self.n_tasks,) or values.dtype.kind not in "iu":
            raise BenchError(
                f"{name} must be an int array of shape ({self.n_tasks},); got {values.dtype} {values.shape}"
            )
        if values.min() < 0 or values.max() >= upper:
            raise BenchError(f"{name} must lie in [0, {upper}); got values in [{values.min()}, {values.max()}]")
        return values

    @property
    def reward_scale(self) -> np.ndarray:
        """sigma (B,): running standard deviation of each task's rewards, floored at `min_scale`."""
        variance = self._reward_m2 / np.maximum(self._reward_count, 1.0)
        return np.maximum(np.sqrt(variance), self.config.min_scale)

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Actions (B,) for observations (B,); `rng` breaks ties."""
        obs = self._check("obs", obs, self.n_obs)
        q = self.q[self._index, obs]
        visits = self.visits[self._index, obs]
        log_total = pt.log(1.0 + visits.sum(axis=1, keepdims=True))
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = self.config.bonus * self.reward_scale[:, None] * np.sqrt(log_total / visits)
        score = np.where(visits == 0, np.inf, q + bonus)
        best = score >= score.max(axis=1, keepdims=True)
        # uniform choice among the best: the best entry with the largest random key
        return np.argmax(np.where(best, rng.random(best.shape), -1.0), axis=1)

    def update(
        self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray, terminated: np.ndarray
    ) -> None:
        """Learn from one transition per task (see the module docstring for `next_obs` and `terminated`)."""
        obs = self._check("obs", obs, self.n_obs)
        actions = self._check("actions", actions, self.na)
        next_obs = self._check("next_obs", next_obs, self.n_obs)
        rewards = np.asarray(rewards, dtype=np.float64)
        terminated = np.asarray(terminated, dtype=bool)
        if rewards.shape != (self.n_tasks,) or terminated.shape != (self.n_tasks,):
            raise BenchError(
                f"rewards and terminated must have shape ({self.n_tasks},); got {rewards.shape} and {terminated.shape}"
            )
        self._reward_count += 1.0
        delta = rewards - self._reward_mean
        self._reward_mean += delta / self._reward_count
        self._reward_m2 += delta * (rewards - self._reward_mean)
        index = self._index
        self.visits[index, obs, actions] += 1
        n = self.visits[index, obs, actions]
        cfg = self.config
        lr = np.maximum((cfg.lr_horizon + 1.0) / (cfg.lr_horizon + n), cfg.min_lr)
        target = rewards + cfg.gamma * self.q[index, next_obs].max(axis=1) * ~terminated
        self.q[index, obs, actions] += lr * (target - self.q[index, obs, actions])
