"""The two learning behavior policies of DPD synthesis, batched over B sequences.

Tables are (B * ns_max, ...) arrays addressed by flat rows: `pair_row = b * ns_max + s` for a
state, `row = pair_row * na + a` for a state-action pair. Every learner is updated on every
transition of its sequence, whichever behavior acted (see docs/data.md).
"""

from __future__ import annotations

import numpy as np

from bench.data.behavior import MODEL_PRIOR_COUNT, BehaviorSettings

MAX_STIFFNESS = 10.0
"""Cap of the Q-learner's Boltzmann stiffness."""
MIN_SCALE = 1e-2
"""Floor of the Q-value range and of the reward std used as scales."""


class QLearner:
    """Tabular Q-learning (Watkins) with a 1 / n learning rate floored at a per-sequence minimum;
    acts by a Boltzmann policy whose stiffness grows with the visits of the state."""

    def __init__(self, batch: int, ns_max: int, na: int, settings: BehaviorSettings) -> None:
        self.settings = settings
        self.value = np.zeros((batch * ns_max, na))
        self.count = np.zeros(batch * ns_max * na)
        self.visits = np.zeros(batch * ns_max)

    def logits(self, pair_row: np.ndarray) -> np.ndarray:
        """Boltzmann logits (B, na) at the current states: Q[s] / range(Q[s]) * stiffness."""
        q = self.value[pair_row]
        spread = np.maximum(q.max(axis=1) - q.min(axis=1), MIN_SCALE)
        stiffness = np.minimum(1.0 + self.visits[pair_row] / self.settings.q_stiffness_steps, MAX_STIFFNESS)
        return q * (stiffness / spread)[:, None]

    def update(self, pair_row, row, next_row, reward, terminated) -> None:
        cells = self.value.reshape(-1)
        self.count[row] += 1
        lr = np.maximum(1.0 / self.count[row], self.settings.q_min_lr)
        bootstrap = np.where(terminated, 0.0, self.value[next_row].max(axis=1))
        cells[row] += lr * (reward + self.settings.q_gamma * bootstrap - cells[row])
        self.visits[pair_row] += 1


class ModelBasedLearner:
    """Optimistic model-based learner: transition counts, mean rewards and a running reward std;
    after each transition it backs up the visited pair with its model and an optimism bonus
    c * reward_std / sqrt(n + 1) inside the backup (a uniform next-state prior of weight
    MODEL_PRIOR_COUNT covers unseen pairs). Acts greedily."""

    def __init__(self, batch: int, ns_max: int, ns: np.ndarray, na: int, settings: BehaviorSettings) -> None:
        self.settings, self.ns_max = settings, ns_max
        self.count = np.zeros((batch * ns_max * na, ns_max), dtype=np.float32)  # exact counts up to 2**24
        self.pair_count = np.zeros(batch * ns_max * na)
        self.reward_sum = np.zeros(batch * ns_max * na)
        self.value = np.zeros((batch * ns_max, na))
        self.state_value = np.zeros((batch, ns_max))
        self.prior = MODEL_PRIOR_COUNT / ns
        self.reward_n, self.reward_mean, self.reward_m2 = np.zeros(batch), np.zeros(batch), np.zeros(batch)

    def values(self, pair_row: np.ndarray) -> np.ndarray:
        return self.value[pair_row]

    def update(self, index, state, pair_row, row, next_state, reward) -> None:
        self.count.reshape(-1)[row * self.ns_max + next_state] += 1
        self.pair_count[row] += 1
        self.reward_sum[row] += reward
        self.reward_n += 1
        delta = reward - self.reward_mean
        self.reward_mean += delta / self.reward_n
        self.reward_m2 += delta * (reward - self.reward_mean)
        reward_std = np.maximum(np.sqrt(self.reward_m2 / self.reward_n), MIN_SCALE)
        n = self.pair_count[row]
        v = self.state_value
        expected_next = (self.count[row] * v).sum(axis=1) + self.prior * v.sum(axis=1)
        self.value.reshape(-1)[row] = (
            self.reward_sum[row] / n
            + self.settings.mb_bonus * reward_std / np.sqrt(n + 1.0)
            + self.settings.mb_gamma * expected_next / (n + MODEL_PRIOR_COUNT)
        )
        v[index, state] = self.value[pair_row].max(axis=1)
