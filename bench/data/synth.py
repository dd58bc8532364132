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
    if not tasks:
        raise BenchError("synthesize needs at least one task; got none")
    if any(task.seed is None for task in tasks):
        raise BenchError("every task needs a seed: sequence randomness derives from it")
    if len({task.na for task in tasks}) != 1:
        raise BenchError(f"tasks must share na; got {sorted({task.na for task in tasks})}")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise BenchError(f"seq_len must be a positive int; got {seq_len!r}")
    policy_weights = bh.check_policy_weights(policy_weights)
    tables = _tables(tasks)
    batch, ns_max, na = len(tasks), tables["start_cdf"].shape[1], tasks[0].na
    if labels is None:
        labels = label_policy(TaskArrays.stack(tasks))
    if np.shape(labels) != (batch, ns_max):
        raise BenchError(f"labels must have shape (B, ns_max) = {(batch, ns_max)}; got {np.shape(labels)}")
    ns = np.array([task.ns for task in tasks])
    horizon = np.array([task.horizon for task in tasks])
    index = np.arange(batch)

    next_cdf, start_cdf, reward_mean, reward_std = (tables[k] for k in ("next_cdf", "start_cdf", "reward", "noise"))
    terminal, observation = tables["terminal"], tables["observation"]
    reward_base = tables["reward_base"]

    streams = _Streams([task.seed for task in tasks], na)
    settings = bh.BehaviorSettings.draw(
        np.stack([rng.random(bh.N_SETTINGS) for rng in streams.setup_rngs]), ns, na, policy_weights
    )
    kind = settings.kind.copy()
    # random policy: logits rotate from one random table towards another, a step per episode
    tables_a, tables_b = np.zeros((2, batch, ns_max, na))
    for b, rng in enumerate(streams.setup_rngs):
        tables_a[b, : ns[b]], tables_b[b, : ns[b]] = pt.standard_normal(rng, (2, ns[b], na)) * settings.logit_scale[b]
    angle = np.zeros(batch)
    rotation = np.stack([np.ones(batch), np.zeros(batch)])  # cos and sin of `angle`
    episode_masked = np.array([rng.random() < bh.TAG_MASK_EPISODE_PROB for rng in streams.setup_rngs])

    q_learner = QLearner(batch, ns_max, na, settings)
    model_learner = ModelBasedLearner(batch, ns_max, ns, na, settings)

    steps = {name: np.empty((seq_len, batch), dtype=dtype) for name, dtype in FIELDS.items()}
    steps["prompt"][:] = bh.PROMPT_ORACLE
    kind_tag = np.array([bh.TAG_ID[name] for name in ("random", "q_learning", "model_based", "model_based", "oracle", "oracle")])
    # (B * ns_max, ...) views: row pair_row = b * ns_max + s
    labels_flat, observation_flat, terminal_flat = labels.reshape(-1), observation.reshape(-1), terminal.reshape(-1)
    tables_a, tables_b = tables_a.reshape(-1, na), tables_b.reshape(-1, na)
    episode_step = np.zeros(batch, dtype=np.int64)
    offset = index * ns_max
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

        # candidate actions of every kind
        oracle_action = labels_flat[pair_row]
        uniform_action = np.minimum((u[U_SAMPLE] * na).astype(np.int64), na - 1)
        # the random policy and the Q-learner both sample from a softmax: one draw serves both
        random_logits = rotation[0][:, None] * tables_a[pair_row] + rotation[1][:, None] * tables_b[pair_row]
        logits = np.where((kind == bh.RANDOM)[:, None], random_logits, q_learner.logits(pair_row))
        softmax_action = _sample_softmax(logits, u[U_SAMPLE])
        mb_action = np.argmax(model_learner.values(pair_row) + JITTER * u[U_JITTER:].T, axis=1)
        use_oracle = (kind == bh.MIXTURE) & (u[U_ORACLE] < mix_oracle_table[j])
        noisy = u[U_NOISE] < noise_table[j, kind, index]
        candidates = np.stack((softmax_action, softmax_action, mb_action, mb_action, oracle_action, oracle_action))
        chosen = np.where(use_oracle, oracle_action, candidates[kind, index])
        action = np.where(noisy, uniform_action, chosen)
        tag = np.where(use_oracle, bh.TAG_ID["oracle"], kind_tag[kind])
        tag = np.where(noisy, bh.TAG_ID["random"], tag)
        tag = np.where(settings.mask_all | episode_masked, bh.TAG_UNKNOWN, tag)

        # environment step
        row = pair_row * na + action
        next_state = _sample(next_cdf[row], u[U_NEXT])
        task_entry = reward_base + (state * na + action) * ns + next_state
        reward = reward_mean[task_entry] + reward_std[task_entry] * normals[j]
        next_row = offset + next_state
        terminated = terminal_flat[next_row]
        episode_step += 1
        done = terminated | (episode_step >= horizon)

        steps["obs"][t] = observation_flat[pair_row]
        steps["tag"][t] = tag
        steps["action"][t] = action
        steps["label"][t] = oracle_action
        steps["reward"][t] = reward
        steps["done"][t] = done
        steps["policy"][t] = kind

        q_learner.update(pair_row, row, next_row, reward, terminated)
        model_learner.update(index, state, pair_row, row, next_state, reward)

        if done.any():
            ended = index[done]
            # episode-end events: policy switch, tag masking, random-policy drift; then reset
            ue = u[:, ended]
            switch = settings.switching[ended] & (ue[U_SWITCH] < bh.SWITCH_PROB)
            kind[ended] = np.where(switch, bh.draw_kind(ue[U_KIND], policy_weights), kind[ended])
            episode_masked[ended] = ue[U_MASK] < bh.TAG_MASK_EPISODE_PROB
            angle[ended] += settings.logit_drift[ended]
            rotation[1, ended], rotation[0, ended] = pt.sin_cos(angle[ended])
            next_state = next_state.copy()
            next_state[ended] = _sample(start_cdf[ended], ue[U_START])
            episode_step[ended] = 0
        state = next_state
    return {name: np.ascontiguousarray(array.T) for name, array in steps.items()}
