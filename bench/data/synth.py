"""DPD trajectory synthesis: one sequence of `seq_len` steps per task, B tasks stepped together.

Its own vectorised stepping core on stacked, padded task tables (the episode semantics of
`bench.anymdp.solvers`; `BatchedEnv` draws from one generator for the whole batch, while here
every sequence draws from its own). A behavior policy acts (`bench.data.behavior`), the oracle
(`solvers.label_policy`) labels the current state, and every learner is updated on every
transition. Sequence randomness comes only from its task's seed: a setup stream draws the behavior
settings, and a step stream draws a fixed set of uniforms (and one normal) per step in fixed
blocks, used or not, so a sequence's bytes do not depend on which other tasks share its batch.
All arithmetic is `bench.anymdp.portable`'s: the bytes are the same on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.anymdp import portable as pt
from bench.anymdp.solvers import TaskArrays, label_policy
from bench.anymdp.task import Task
from bench.data import behavior as bh
from bench.data.learners import ModelBasedLearner, QLearner
from bench.errors import BenchError
from bench.presets import DEFAULT_POLICY_WEIGHTS

FIELDS = {
    "obs": np.int16,
    "prompt": np.int8,
    "tag": np.int8,
    "action": np.int8,
    "label": np.int8,
    "reward": np.float32,
    "done": np.bool_,
    "policy": np.int8,
}
"""Per-step fields of a synthesized sequence and their storage dtypes."""
SYNTH_STREAM = 2
"""SeedSequence spawn key of a sequence's synthesis randomness (under its task seed)."""
BLOCK = 256
"""Steps of per-sequence uniforms drawn at once (fixed: part of the data definition)."""
U_NEXT, U_START, U_NOISE, U_ORACLE, U_SAMPLE, U_SWITCH, U_KIND, U_MASK, U_JITTER = range(9)
"""Columns of the per-step uniforms (U_SWITCH, U_KIND, U_MASK: episode-end events, read only
where an episode ends); U_JITTER.. are na tie-break draws for greedy learners."""
JITTER = 1e-9
"""Scale of the random tie-break added to greedy learner values."""
SUB_BATCH_CELLS = 1 << 22
"""Sequences stepped together hold about this many (s, a, s') table cells (16 MiB per float32 table):
small enough to stay in cache, whose misses dominate the cost at large ns."""
SUB_BATCH_RANGE = (64, 512)
"""Fewest and most sequences stepped together (fewer: per-step overhead dominates)."""


def sub_batches(ns: Sequence[int], na: int) -> list[list[int]]:
    """Split task indices into sub-batches of similar ns (a pure function of `ns` and `na`)."""
    order = np.argsort(np.asarray(ns), kind="stable")
    batches: list[list[int]] = []
    for i in order:  # ascending ns: the candidate's ns is its sub-batch's largest
        limit = int(np.clip(SUB_BATCH_CELLS // (ns[i] ** 2 * na), *SUB_BATCH_RANGE))
        if not batches or len(batches[-1]) >= limit:
            batches.append([])
        batches[-1].append(int(i))
    return batches


def _cumulative(p: np.ndarray) -> np.ndarray:
    """Cumulative probabilities along the last axis, normalised so that the last entry is exactly 1."""
    c = np.cumsum(p, axis=-1)
    total = c[..., -1:]
    return np.where(total > 0, c / np.where(total > 0, total, 1.0), 1.0)


def _sample(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index of the entry hit by u in [0, 1) per row: never a zero-probability entry."""
    return (cumulative < u[:, None]).sum(axis=1)


def _sample_softmax(logits: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Sample per row from softmax(logits) (B, na) with uniforms u (B,)."""
    c = np.cumsum(pt.exp(logits - logits.max(axis=1, keepdims=True)), axis=1)
    return (c < (u * c[:, -1])[:, None]).sum(axis=1)


class _Streams:
    """Per-sequence generators: a setup stream (settings, random-policy tables) and per-step uniforms."""

    def __init__(self, seeds: Sequence[int], na: int) -> None:
        self.setup_rngs, self.step_rngs = [], []
        for seed in seeds:
            setup, step = np.random.SeedSequence(seed, spawn_key=(SYNTH_STREAM,)).spawn(2)
            self.setup_rngs.append(np.random.default_rng(setup))
            self.step_rngs.append(np.random.default_rng(step))
        self.width = U_JITTER + na

    def block(self) -> tuple[np.ndarray, np.ndarray]:
        """(uniforms (BLOCK, width, B), standard normals (BLOCK, B)) for the next block of steps."""
        uniforms = np.empty((len(self.step_rngs), BLOCK, self.width))
        normals = np.empty((len(self.step_rngs), BLOCK))
        for b, rng in enumerate(self.step_rngs):
            rng.random(out=uniforms[b])
            normals[b] = pt.standard_normal(rng, BLOCK)
        return np.ascontiguousarray(uniforms.transpose(1, 2, 0)), np.ascontiguousarray(normals.T)


def _tables(tasks: Sequence[Task]) -> dict[str, np.ndarray]:
    """Stacked environment tables, padded to the largest ns (padded states: unreachable, terminal).

    `next_cdf` (B * ns_max * na, ns_max): cumulative P(s' | s, a), normalised to end exactly at 1
    (padded columns are 1, so a draw u < 1 never lands there). Rewards and their noise are flat
    concatenations of each task's (ns, na, ns) tables; task b starts at `reward_base[b]`.
    """
    batch, ns_max, na = len(tasks), max(t.ns for t in tasks), tasks[0].na
    next_cdf = np.ones((batch, ns_max, na, ns_max), dtype=np.float32)  # float32 halves the memory traffic
    start_cdf = np.ones((batch, ns_max))
    terminal = np.ones((batch, ns_max), dtype=bool)
    observation = np.zeros((batch, ns_max), dtype=np.int64)
    for b, task in enumerate(tasks):
        n = task.ns
        next_cdf[b, :n, :, :n] = _cumulative(task.transition)
        start_cdf[b, :n] = _cumulative(task.start)
        terminal[b, :n] = task.terminal
        observation[b, :n] = task.permutation
    sizes = [task.reward.size for task in tasks]
    return {
        "next_cdf": next_cdf.reshape(-1, ns_max),
        "start_cdf": start_cdf,
        "terminal": terminal,
        "observation": observation,
        "reward": np.concatenate([task.reward.ravel() for task in tasks]),
        "noise": np.concatenate([task.reward_noise.ravel() for task in tasks]),
        "reward_base": np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64),
    }


KIND_TAG = np.array([bh.TAG_ID[t] for t in ("random", "q_learning", "model_based", "model_based", "oracle", "oracle")])
"""Tag of each behavior kind's own action (order of `behavior.POLICIES`): not a noise or a mixture's oracle action."""


def _check_inputs(
    tasks: Sequence[Task], seq_len: int, labels: np.ndarray | None, policy_weights: Sequence[float]
) -> tuple[float, ...]:
    """Raise a BenchError for invalid arguments of `synthesize`; return the checked policy weights."""
    if not tasks:
        raise BenchError("synthesize needs at least one task; got none")
    if any(task.seed is None for task in tasks):
        raise BenchError("every task needs a seed: sequence randomness derives from it")
    if len({task.na for task in tasks}) != 1:
        raise BenchError(f"tasks must share na; got {sorted({task.na for task in tasks})}")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise BenchError(f"seq_len must be a positive int; got {seq_len!r}")
    shape = (len(tasks), max(task.ns for task in tasks))
    if labels is not None and np.shape(labels) != shape:
        raise BenchError(f"labels must have shape (B, ns_max) = {shape}; got {np.shape(labels)}")
    return bh.check_policy_weights(policy_weights)


class _RandomPolicy:
    """The random behavior's logits: per sequence they rotate from one random table towards another,
    by `logit_drift` radians at each episode end. Rows are `pair_row = b * ns_max + s`."""

    def __init__(self, setup_rngs: Sequence[np.random.Generator], ns: np.ndarray, na: int, scale: np.ndarray) -> None:
        tables_a, tables_b = np.zeros((2, len(ns), max(ns), na))
        for b, rng in enumerate(setup_rngs):
            tables_a[b, : ns[b]], tables_b[b, : ns[b]] = pt.standard_normal(rng, (2, ns[b], na)) * scale[b]
        self.tables_a, self.tables_b = tables_a.reshape(-1, na), tables_b.reshape(-1, na)
        self.angle, self.cos, self.sin = np.zeros(len(ns)), np.ones(len(ns)), np.zeros(len(ns))

    def logits(self, pair_row: np.ndarray) -> np.ndarray:
        """Logits (B, na) at the current states."""
        return self.cos[:, None] * self.tables_a[pair_row] + self.sin[:, None] * self.tables_b[pair_row]

    def drift(self, ended: np.ndarray, angle: np.ndarray) -> None:
        """Rotate the logits of sequences `ended` on by `angle`."""
        self.angle[ended] += angle
        self.sin[ended], self.cos[ended] = pt.sin_cos(self.angle[ended])


class _Behavior:
    """The behavior policies of B sequences: each acts by its current kind, every learner learns every
    transition, and the kind may switch at episode ends. Rows are `pair_row = b * ns_max + s`."""

    def __init__(
        self,
        settings: bh.BehaviorSettings,
        setup_rngs: Sequence[np.random.Generator],
        ns: np.ndarray,
        na: int,
        labels: np.ndarray,
        policy_weights: tuple[float, ...],
    ) -> None:
        batch, ns_max = labels.shape
        self.settings, self.policy_weights, self.na = settings, policy_weights, na
        self.labels, self.index, self.kind = labels.reshape(-1), np.arange(batch), settings.kind.copy()
        self.random = _RandomPolicy(setup_rngs, ns, na, settings.logit_scale)
        self.episode_masked = np.array([rng.random() < bh.TAG_MASK_EPISODE_PROB for rng in setup_rngs])
        self.q_learner = QLearner(batch, ns_max, na, settings)
        self.model_learner = ModelBasedLearner(batch, ns_max, ns, na, settings)

    def act(
        self, u: np.ndarray, pair_row: np.ndarray, noise: np.ndarray, mix_oracle: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(action, tag, oracle label) per sequence, from the step's uniforms u (width, B), its probability
        of a noise action per kind (kinds, B) and the mixture's probability of an oracle action (B,)."""
        kind, index, na = self.kind, self.index, self.na
        label = self.labels[pair_row]
        uniform_action = np.minimum((u[U_SAMPLE] * na).astype(np.int64), na - 1)
        # the random policy and the Q-learner both sample from a softmax: one draw serves both
        logits = np.where((kind == bh.RANDOM)[:, None], self.random.logits(pair_row), self.q_learner.logits(pair_row))
        softmax_action = _sample_softmax(logits, u[U_SAMPLE])
        mb_action = np.argmax(self.model_learner.values(pair_row) + JITTER * u[U_JITTER:].T, axis=1)
        candidates = np.stack((softmax_action, softmax_action, mb_action, mb_action, label, label))
        use_oracle = (kind == bh.MIXTURE) & (u[U_ORACLE] < mix_oracle)
        noisy = u[U_NOISE] < noise[kind, index]
        action = np.where(noisy, uniform_action, np.where(use_oracle, label, candidates[kind, index]))
        tag = np.where(use_oracle, bh.TAG_ID["oracle"], KIND_TAG[kind])
        tag = np.where(noisy, bh.TAG_ID["random"], tag)
        tag = np.where(self.settings.mask_all | self.episode_masked, bh.TAG_UNKNOWN, tag)
        return action, tag, label

    def learn(
        self,
        state: np.ndarray,
        pair_row: np.ndarray,
        row: np.ndarray,
        next_state: np.ndarray,
        next_row: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """Update both learners with every sequence's transition (whichever kind acted)."""
        self.q_learner.update(pair_row, row, next_row, reward, terminated)
        self.model_learner.update(self.index, state, pair_row, row, next_state, reward)

    def end_episodes(self, ended: np.ndarray, u: np.ndarray) -> None:
        """Episode-end events of sequences `ended`, with their step's uniforms u (width, len(ended)):
        a policy switch, a new tag mask and the random policy's drift."""
        switch = self.settings.switching[ended] & (u[U_SWITCH] < bh.SWITCH_PROB)
        self.kind[ended] = np.where(switch, bh.draw_kind(u[U_KIND], self.policy_weights), self.kind[ended])
        self.episode_masked[ended] = u[U_MASK] < bh.TAG_MASK_EPISODE_PROB
        self.random.drift(ended, self.settings.logit_drift[ended])


def synthesize(
    tasks: Sequence[Task],
    seq_len: int,
    labels: np.ndarray | None = None,
    policy_weights: Sequence[float] = DEFAULT_POLICY_WEIGHTS,
) -> dict[str, np.ndarray]:
    """DPD sequences (B, seq_len) per field of FIELDS for `tasks` (same na, any ns; each with a seed).

    `labels` (B, ns_max) are the oracle's actions per inner state (default: `solvers.label_policy`);
    `policy_weights` the probability of each behavior kind (`behavior.POLICIES`).
    """
    policy_weights = _check_inputs(tasks, seq_len, labels, policy_weights)
    if labels is None:
        labels = label_policy(TaskArrays.stack(tasks))
    tables = _tables(tasks)
    next_cdf, start_cdf, reward_mean, reward_std = (tables[k] for k in ("next_cdf", "start_cdf", "reward", "noise"))
    terminal, observation = tables["terminal"].reshape(-1), tables["observation"].reshape(-1)  # rows: pair_row
    reward_base = tables["reward_base"]
    batch, ns_max, na = len(tasks), start_cdf.shape[1], tasks[0].na
    ns = np.array([task.ns for task in tasks])
    horizon = np.array([task.horizon for task in tasks])

    streams = _Streams([task.seed for task in tasks], na)
    setting_uniforms = np.stack([rng.random(bh.N_SETTINGS) for rng in streams.setup_rngs])
    settings = bh.BehaviorSettings.draw(setting_uniforms, ns, na, policy_weights)
    behavior = _Behavior(settings, streams.setup_rngs, ns, na, labels, policy_weights)

    steps = {name: np.empty((seq_len, batch), dtype=dtype) for name, dtype in FIELDS.items()}
    steps["prompt"][:] = bh.PROMPT_ORACLE
    index = np.arange(batch)
    offset = index * ns_max
    episode_step = np.zeros(batch, dtype=np.int64)
    state = None

    for t in range(seq_len):
        j = t % BLOCK
        if j == 0:
            uniforms, normals = streams.block()
            block_t = np.arange(t, t + BLOCK)[:, None]
            noise_table = settings.noise_table(block_t)  # (BLOCK, kinds, B)
            mix_oracle_table = settings.mix_oracle_at(block_t)  # (BLOCK, B)
        u = uniforms[j]
        if state is None:
            state = _sample(start_cdf, u[U_START])
        pair_row = offset + state
        action, tag, label = behavior.act(u, pair_row, noise_table[j], mix_oracle_table[j])

        # environment step
        row = pair_row * na + action
        next_state = _sample(next_cdf[row], u[U_NEXT])
        task_entry = reward_base + (state * na + action) * ns + next_state
        reward = reward_mean[task_entry] + reward_std[task_entry] * normals[j]
        next_row = offset + next_state
        terminated = terminal[next_row]
        episode_step += 1
        done = terminated | (episode_step >= horizon)

        steps["obs"][t] = observation[pair_row]
        steps["tag"][t] = tag
        steps["action"][t] = action
        steps["label"][t] = label
        steps["reward"][t] = reward
        steps["done"][t] = done
        steps["policy"][t] = behavior.kind

        behavior.learn(state, pair_row, row, next_state, next_row, reward, terminated)
        if done.any():  # episode-end events, then a new episode from a start state
            ended = index[done]
            u_ended = u[:, ended]
            behavior.end_episodes(ended, u_ended)
            next_state[ended] = _sample(start_cdf[ended], u_ended[U_START])
            episode_step[ended] = 0
        state = next_state
    return {name: np.ascontiguousarray(array.T) for name, array in steps.items()}
