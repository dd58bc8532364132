"""Problem sizes and rounds of the speed suite: `full` (`make bench`) or `smoke` (`BENCH_SCALE=smoke`:
every benchmark body once, on tiny inputs, so that the suite is tested without timing anything)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    name: str
    rounds: int
    """Timed rounds of a benchmark whose call takes about a second or less."""
    warmup: int
    """Untimed rounds before them."""
    sample_ns: tuple[int, ...]
    sample_tasks: int
    """Tasks sampled per ns, seeds 0, 1, ...: one per round."""
    env_ns: int
    env_tasks: int
    """Tasks of `env_ns` sampled once per session: the batched env steps them all."""
    batched_steps: int
    single_steps: int
    solver_ns: int
    solver_tasks: int
    solver_distinct: int
    """Distinct tasks among `solver_tasks` (sampling them all would dominate the suite)."""
    backward_tasks: int
    """`backward_induction` stores Q for every step to go: fewer tasks."""
    synth_tasks: int
    """Of the `env_ns` tasks: one sub-batch (`synth.sub_batches`) at ns 64."""
    synth_len: int
    tiny_tasks: int
    """The tiny preset's first training tasks, synthesized at its sequence length."""
    build_tasks: int
    loader_tasks: int
    loader_batch: int
    loader_rounds: int
    """An epoch takes milliseconds: more rounds."""
    data_len: int
    """Steps per sequence of the built splits (build, loader)."""
    layer_batch: int
    layer_len: int
    step_batch: int
    step_rounds: int
    train_batch: int
    train_len: int
    train_segment: int
    stats_reps: int
    """Bootstrap resamples of the statistics benchmarks (the leaderboard uses 2,000)."""


FULL = Scale(
    name="full",
    rounds=5,
    warmup=1,
    sample_ns=(16, 32, 64),
    sample_tasks=8,
    env_ns=64,
    env_tasks=256,
    batched_steps=2000,
    single_steps=10_000,
    solver_ns=128,
    solver_tasks=64,
    solver_distinct=8,
    backward_tasks=32,
    synth_tasks=204,
    synth_len=1024,
    tiny_tasks=256,
    build_tasks=128,
    loader_tasks=512,
    loader_batch=32,
    loader_rounds=15,
    data_len=512,
    layer_batch=4,
    layer_len=2048,
    step_batch=256,
    step_rounds=20,
    train_batch=8,
    train_len=512,
    train_segment=256,
    stats_reps=2000,
)

SMOKE = Scale(
    name="smoke",
    rounds=1,
    warmup=0,
    sample_ns=(16,),
    sample_tasks=1,
    env_ns=8,
    env_tasks=4,
    batched_steps=10,
    single_steps=50,
    solver_ns=8,
    solver_tasks=4,
    solver_distinct=2,
    backward_tasks=2,
    synth_tasks=4,
    synth_len=32,
    tiny_tasks=4,
    build_tasks=4,
    loader_tasks=8,
    loader_batch=4,
    loader_rounds=1,
    data_len=32,
    layer_batch=1,
    layer_len=16,
    step_batch=2,
    step_rounds=1,
    train_batch=1,
    train_len=32,
    train_segment=16,
    stats_reps=20,
)

SCALES = {scale.name: scale for scale in (FULL, SMOKE)}


def _chosen() -> Scale:
    name = os.environ.get("BENCH_SCALE", "full")
    if name not in SCALES:
        raise ValueError(f"BENCH_SCALE={name!r}; accepted: {', '.join(SCALES)}")
    return SCALES[name]


SCALE = _chosen()
