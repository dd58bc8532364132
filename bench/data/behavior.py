"""The DPD behavior mixture: policy kinds, their weights and per-sequence settings, prompt/tag ids.

Ideas follow the behavior solvers of airsoul's AnyMDP data generator (airs-cuhk/airsoul,
`data/anymdp/anymdp_behavior_solver.py`, read, not copied): a random drifting softmax policy, a
Q-learner and a model-based optimistic learner with decaying noise, a learner + oracle + noise
mixture, epsilon-greedy around the oracle, and the oracle itself. See docs/data.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.anymdp import portable as pt
from bench.errors import BenchError

POLICIES = ("random", "q_learning", "model_based", "mixture", "eps_oracle", "oracle")
"""Behavior policy kinds (the `policy` field of a shard stores the index)."""
RANDOM, Q_LEARNING, MODEL_BASED, MIXTURE, EPS_ORACLE, ORACLE = range(len(POLICIES))

TAGS = ("oracle", "model_based", "q_learning", "random", "unknown")
"""Prompt/tag vocabulary: the kind of policy that chose an action ("unknown" when masked)."""
TAG_ID = {name: i for i, name in enumerate(TAGS)}
N_TAGS = len(TAGS)
PROMPT_ORACLE = TAG_ID["oracle"]
"""The prompt of every step: the label comes from the oracle (evaluation prompts with it too)."""
TAG_UNKNOWN = TAG_ID["unknown"]

TAG_MASK_SEQUENCE_PROB = 0.15
"""Share of sequences whose tags are all "unknown"."""
TAG_MASK_EPISODE_PROB = 0.15
"""Share of episodes (in the other sequences) whose tags are "unknown"."""
SWITCHING_SEQUENCE_PROB = 0.85
"""Share of sequences that may switch behavior policy at episode ends."""
SWITCH_PROB = 0.20
"""Probability of drawing a new behavior kind at an episode end, in a switching sequence."""
MODEL_PRIOR_COUNT = 0.01
"""Pseudo-count of the model-based learner's uniform prior over next states (per (s, a))."""

N_SETTINGS = 23
"""Uniform draws per sequence that `BehaviorSettings.draw` maps to settings."""


def check_policy_weights(weights: Sequence[float]) -> tuple[float, ...]:
    """`weights` as a tuple, or a BenchError: one non-negative weight per kind of POLICIES, not all 0."""
    weights = tuple(float(w) for w in weights)
    if len(weights) != len(POLICIES) or any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise BenchError(
            f"policy_weights={weights}: need {len(POLICIES)} non-negative weights, not all 0, "
            f"one per kind ({', '.join(POLICIES)})"
        )
    return weights


def draw_kind(u: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Behavior kinds for uniforms `u` in [0, 1), by `weights` (one per kind of POLICIES)."""
    edges = np.cumsum(weights) / np.sum(weights)
    return np.minimum(np.searchsorted(edges, u, side="right"), len(POLICIES) - 1)


@dataclass
class BehaviorSettings:
    """Per-sequence settings of every behavior kind, arrays of shape (B,).

    Noise schedules are functions of the step t in the sequence (every learner sees every
    transition, whichever kind acts). Decay rates scale with 1 / (ns * na) as in the reference.
    """

    kind: np.ndarray
    """Behavior kind at the sequence start (index into POLICIES)."""
    switching: np.ndarray
    """Whether the kind may be redrawn at episode ends."""
    mask_all: np.ndarray
    """Whether every tag of the sequence is "unknown"."""
    logit_scale: np.ndarray
    """Random policy: std of its logits, Exp(mean 2)."""
    logit_drift: np.ndarray
    """Random policy: rotation angle (radians) of its logits per episode, U(0, 0.3) (see synth)."""
    q_gamma: np.ndarray
    """Q-learner discount, U(0.9, 0.99)."""
    q_noise: np.ndarray
    """Q-learner: initial probability of a uniform-random action (0 for half the sequences, else U(0.1, 0.5))."""
    q_noise_decay: np.ndarray
    """Q-learner: noise decrease per step, U(0, 0.1 / (ns na))."""
    q_min_lr: np.ndarray
    """Q-learner: floor of the 1 / n learning rate, U(0.05, 0.3)."""
    q_stiffness_steps: np.ndarray
    """Q-learner: state visits over which the Boltzmann stiffness grows by 1 (capped at 10), U(4, 64)."""
    mb_gamma: np.ndarray
    """Model-based learner discount, U(0.9, 0.99)."""
    mb_noise: np.ndarray
    """Model-based learner: initial random-action probability (as q_noise)."""
    mb_noise_decay: np.ndarray
    """Model-based learner: noise decrease per step, U(0, 0.1 / (ns na))."""
    mb_bonus: np.ndarray
    """Model-based learner: optimism c of the bonus c * reward_std / sqrt(n_sa + 1) added to the
    backed-up value of (s, a) (so optimism propagates), U(0.1, 1)."""
    mix_noise: np.ndarray
    """Mixture: initial random-action probability, U(0, 1)."""
    mix_noise_end: np.ndarray
    """Mixture: noise floor, U(-0.5, 0.5) (negative: reaches 0)."""
    mix_noise_decay: np.ndarray
    """Mixture: noise decrease per step, U(0, 0.1 / (ns na))."""
    mix_oracle: np.ndarray
    """Mixture: initial oracle probability (among non-random actions), U(-2, -0.5) (negative: 0)."""
    mix_oracle_end: np.ndarray
    """Mixture: oracle probability cap, U(0, 0.2)."""
    mix_oracle_rise: np.ndarray
    """Mixture: oracle probability increase per step, U(0, 0.1 / (ns na))."""
    eps_decay: np.ndarray
    """Epsilon-greedy around the oracle: epsilon falls from 1 by U(0, 1 / (ns na)) per step."""

    @classmethod
    def draw(cls, u: np.ndarray, ns: np.ndarray, na: int, weights: Sequence[float]) -> BehaviorSettings:
        """Settings from uniforms `u` (B, N_SETTINGS), the tasks' state counts `ns` (B,) and the
        behavior kinds' `weights`."""
        per_pair = 1.0 / (ns * na)

        def uniform(column: int, lo: float | np.ndarray, hi: float | np.ndarray) -> np.ndarray:
            return lo + (hi - lo) * u[:, column]

        def noise(on: int, level: int) -> np.ndarray:
            return np.where(u[:, on] < 0.5, 0.0, uniform(level, 0.1, 0.5))

        return cls(
            kind=draw_kind(u[:, 0], weights),
            switching=u[:, 1] < SWITCHING_SEQUENCE_PROB,
            mask_all=u[:, 2] < TAG_MASK_SEQUENCE_PROB,
            logit_scale=-2.0 * pt.log(1.0 - u[:, 3]),
            logit_drift=uniform(4, 0.0, 0.3),
            q_gamma=uniform(5, 0.9, 0.99),
            q_noise=noise(6, 7),
            q_noise_decay=uniform(8, 0.0, 0.1 * per_pair),
            q_min_lr=uniform(9, 0.05, 0.3),
            q_stiffness_steps=uniform(10, 4.0, 64.0),
            mb_gamma=uniform(11, 0.9, 0.99),
            mb_noise=noise(12, 13),
            mb_noise_decay=uniform(14, 0.0, 0.1 * per_pair),
            mb_bonus=uniform(15, 0.1, 1.0),
            mix_noise=uniform(16, 0.0, 1.0),
            mix_noise_end=uniform(17, -0.5, 0.5),
            mix_noise_decay=uniform(18, 0.0, 0.1 * per_pair),
            mix_oracle=uniform(19, -2.0, -0.5),
            mix_oracle_end=uniform(20, 0.0, 0.2),
            mix_oracle_rise=uniform(21, 0.0, 0.1 * per_pair),
            eps_decay=uniform(22, 0.0, per_pair),
        )

    def noise_table(self, t: np.ndarray) -> np.ndarray:
        """Probability of a uniform-random action per kind at steps t (n, 1): (n, kinds, B)."""
        zero = np.zeros(np.broadcast_shapes(t.shape, self.q_noise.shape))
        q = np.maximum(self.q_noise - self.q_noise_decay * t, 0.0)
        mb = np.maximum(self.mb_noise - self.mb_noise_decay * t, 0.0)
        mix = np.maximum(np.maximum(self.mix_noise - self.mix_noise_decay * t, self.mix_noise_end), 0.0)
        eps = np.maximum(1.0 - self.eps_decay * t, 0.0)
        return np.stack((zero, q, mb, mix, eps, zero), axis=1)

    def mix_oracle_at(self, t: np.ndarray) -> np.ndarray:
        """Mixture: probability that a non-random action is the oracle's at steps t (broadcast with (B,))."""
        return np.clip(self.mix_oracle + self.mix_oracle_rise * t, 0.0, self.mix_oracle_end)
