"""Benchmark presets, defined in one place.

A preset fixes everything that must be identical across architectures: the tasks and data
(`DataSpec`), the training and evaluation recipe (`RecipeSpec`), the model width the recipe
embeds into, and the parameter budget every backbone must meet (within 10 %). An architecture
chooses only its own constructor arguments for a preset: `architectures.SIZES` for the shipped
backbones, `Backbone.preset_kwargs` for one from another package.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from bench.errors import BenchError

DEFAULT_POLICY_WEIGHTS = (0.10, 0.20, 0.20, 0.25, 0.20, 0.05)
"""Behavior mixture of docs/data.md, in the order of `bench.data.behavior.POLICIES`: random,
q_learning, model_based, mixture, eps_oracle, oracle."""

LEARNER_POLICY_WEIGHTS = (0.25, 0.35, 0.40, 0.0, 0.0, 0.0)
"""Only random and learning behaviors (no oracle-like ones): the tiny preset's mixture. With the
default mixture a model of tiny's budget learns to copy the behavior's actions, which it then
copies from itself in rollouts (docs/recipe.md)."""


@dataclass(frozen=True)
class DataSpec:
    """The frozen task split and the DPD training data of a preset."""

    train_tasks: int
    """Number of training tasks; one DPD sequence is made per task."""
    train_ns: tuple[int, int]
    """Inclusive range of state counts of training tasks (drawn per task from its seed)."""
    seq_len: int
    """Steps T per training sequence (a stream of episodes on one task)."""
    shard_size: int
    """Sequences per shard file; the last shard may hold fewer."""
    test_ns: tuple[int, ...]
    """State counts of the test groups (ns = 1 is a multi-armed bandit)."""
    test_tasks_per_ns: int
    """Test tasks in each ns group."""
    na: int = 5
    """Actions per task (5 in the paper)."""
    valid_tasks: int = 64
    """Held-out sequences (made like training ones, from the test seed range) for offline evaluation."""
    policy_weights: tuple[float, ...] = DEFAULT_POLICY_WEIGHTS
    """Probability of each behavior kind (random, q_learning, model_based, mixture, eps_oracle,
    oracle) at a sequence start and at every policy switch."""


@dataclass(frozen=True)
class RecipeSpec:
    """The chunkwise training recipe and the evaluation protocol; identical for every backbone."""

    layout: str
    """Token arrangement per step: "paper" (5 tokens: obs, prompt, tag, action, reward) or
    "grouped" (2 tokens: previous reward + obs + prompt + tag, then action); see docs/recipe.md."""
    segment_len: int
    """Steps per training segment (chunk); state is carried across segments, detached."""
    batch_size: int
    """Sequences per optimiser step (global, across all ranks)."""
    train_steps: int
    """Optimiser steps in the whole run."""
    lr: float
    """Peak learning rate of AdamW."""
    warmup_steps: int
    """Linear learning-rate warm-up, in optimiser steps; cosine decay to 10 % afterwards."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to norms, biases and embeddings)."""
    grad_clip: float = 1.0
    """Global gradient-norm clipping."""
    loss_weights: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Weights of the policy, next-observation and reward losses."""
    position_ramp_steps: int = 0
    """Context positions (steps) over which the per-position loss weight ramps linearly from
    near 0 to 1 (0: no ramp)."""
    obs_mask_prob: float = 0.15
    """Share of observation inputs replaced by a mask id during training."""
    checkpoint_every: int = 50
    """Optimiser steps between checkpoints."""
    eval_steps: int = 2048
    """Interactive steps per test task in ICRL rollouts."""
    temperature: tuple[float, float, int] = (1.0, 0.1, 10_000)
    """Sampling temperature decaying from the first to the second value over the given steps."""
    few_shot_episodes: int = 3
    """K: the few-shot score is the mean normalised return over the first K episodes."""


@dataclass(frozen=True)
class Preset:
    name: str
    """Short name used on the command line and in result paths."""
    d_model: int
    """Width of the token embeddings fed to the backbone, and of its output."""
    param_budget: int
    """Target number of backbone parameters; every backbone must be within `param_tolerance`."""
    data: DataSpec
    """Tasks and training data."""
    recipe: RecipeSpec
    """Training and evaluation protocol."""
    param_tolerance: float = 0.10
    """Allowed relative deviation of a backbone's parameter count from `param_budget`."""
    n_heads: int = 4
    """Default number of heads for multi-head backbones (an architecture may choose its own)."""
    split_seed: int = field(default=20250201)
    """Seed of the split: train and test task seeds derive from it (see docs/data.md)."""

    def digest(self) -> str:
        """sha256 over every field: a result records it, so runs of different presets never mix."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


PRESETS: dict[str, Preset] = {
    # A trial of the whole pipeline in about a minute on 2 cores: tiny's model on a handful of tasks
    # and training steps. Its numbers mean nothing; the leaderboard never ranks it.
    "smoke": Preset(
        name="smoke",
        d_model=128,
        param_budget=400_000,
        n_heads=4,
        data=DataSpec(
            train_tasks=64,
            train_ns=(8, 16),
            seq_len=256,
            shard_size=64,
            test_ns=(1, 8),
            test_tasks_per_ns=8,
            valid_tasks=8,
            policy_weights=LEARNER_POLICY_WEIGHTS,
        ),
        recipe=RecipeSpec(
            layout="single",
            segment_len=128,
            batch_size=8,
            train_steps=12,
            lr=2e-3,
            warmup_steps=2,
            loss_weights=(0.6, 0.3, 0.1),  # as tiny
            position_ramp_steps=64,
            checkpoint_every=6,
            eval_steps=128,
            temperature=(1.0, 0.1, 128),
        ),
    ),
    # Trains and evaluates end to end on a 2-core CPU (see docs/data.md and docs/recipe.md).
    "tiny": Preset(
        name="tiny",
        d_model=128,
        param_budget=400_000,
        n_heads=4,
        data=DataSpec(
            train_tasks=8192,
            train_ns=(8, 16),
            seq_len=512,
            shard_size=512,
            test_ns=(1, 8, 16),
            test_tasks_per_ns=64,
            policy_weights=LEARNER_POLICY_WEIGHTS,
        ),
        recipe=RecipeSpec(
            layout="single",
            segment_len=256,
            batch_size=32,
            train_steps=1200,
            lr=2e-3,
            warmup_steps=90,
            loss_weights=(0.6, 0.3, 0.1),  # chosen on valid over the paper's (0.8, 0.1, 0.1): docs/recipe.md
            position_ramp_steps=128,
            checkpoint_every=50,
            eval_steps=512,
            temperature=(1.0, 0.1, 10_000),
        ),
    ),
    # One GPU, about an hour.
    "small": Preset(
        name="small",
        d_model=256,
        param_budget=5_000_000,
        n_heads=4,
        data=DataSpec(
            train_tasks=32_768,
            train_ns=(16, 64),
            seq_len=4096,
            shard_size=1024,
            test_ns=(1, 16, 32, 64),
            test_tasks_per_ns=128,
        ),
        recipe=RecipeSpec(
            layout="paper",
            segment_len=1024,
            batch_size=16,
            train_steps=4000,
            lr=5e-4,
            warmup_steps=200,
            position_ramp_steps=1024,
            checkpoint_every=250,
            eval_steps=8192,
            temperature=(1.0, 0.1, 8192),
        ),
    ),
    # The paper's scale: 512K sequences of 12K steps, hidden 512, RWKV-7 / GDN with 18 layers.
    "paper": Preset(
        name="paper",
        d_model=512,
        param_budget=60_000_000,
        n_heads=8,
        data=DataSpec(
            train_tasks=524_288,
            train_ns=(16, 128),
            seq_len=12_288,
            shard_size=1024,
            test_ns=(1, 16, 32, 64, 128),
            test_tasks_per_ns=256,
        ),
        recipe=RecipeSpec(
            layout="paper",
            segment_len=2048,
            batch_size=40,
            train_steps=80_000,
            lr=2e-4,
            warmup_steps=2000,
            position_ramp_steps=4096,
            checkpoint_every=1000,
            eval_steps=20_000,
            temperature=(1.0, 0.1, 10_000),
        ),
    ),
}

DEFAULT_PRESET = "tiny"
RANKED = ("tiny", "small", "paper")
"""The presets the leaderboard ranks."""
BACKBONE_SIZE = {"smoke": "tiny"}
"""Presets whose backbones are built at another preset's size (the name of a row of
`architectures.SIZES` or of a backbone's `preset_kwargs`); every other preset is its own size."""


def backbone_size(preset: Preset) -> str:
    """The size name backbones are built at for `preset`."""
    return BACKBONE_SIZE.get(preset.name, preset.name)


def max_states(preset: Preset) -> int:
    """The observation ids a preset's model embeds: the most states of its training and test tasks."""
    return max(preset.data.train_ns[1], *preset.data.test_ns)


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a BenchError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise BenchError(f"unknown preset {name!r}; choose from: {', '.join(PRESETS)}") from None
