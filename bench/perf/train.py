"""One optimiser step of the whole recipe on a synthetic batch (embeddings, backbone, heads, losses,
backward over every segment with carried state, clipping, AdamW).

`training_step` sets it up for the speed suite (benchmarks/test_train.py, timed by pytest-benchmark);
`measure` is `gpu-check`'s speed row: seconds per step with the peak memory of the first step, which
needs a process of its own (docs/gpu.md, docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from architectures import count_parameters
from bench.model import ICRLModel, build_model
from bench.perf.common import PeakRSS
from bench.presets import get_preset
from bench.train import parameter_groups, train_step


def synthetic_batch(
    batch: int, length: int, na: int, n_obs: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Random fields of the loader's shapes and types; episodes end every 100 steps."""
    done = torch.zeros(batch, length, dtype=torch.bool)
    done[:, 99::100] = True
    return {
        "obs": torch.randint(0, n_obs, (batch, length), generator=generator),
        "prompt": torch.zeros(batch, length, dtype=torch.long),
        "tag": torch.zeros(batch, length, dtype=torch.long),
        "action": torch.randint(0, na, (batch, length), generator=generator),
        "label": torch.randint(0, na, (batch, length), generator=generator),
        "reward": torch.rand(batch, length, generator=generator),
        "done": done,
        "ns": torch.full((batch,), n_obs),
    }


def training_step(
    arch: str,
    preset_name: str,
    segment: int,
    seq_len: int,
    batch: int,
    device: torch.device,
    layout: str | None = None,
    overrides: dict[str, object] | None = None,
) -> tuple[ICRLModel, Callable[[], None]]:
    """`arch`'s model at the preset's size (seed 0) and a function doing one optimiser step on a fixed
    synthetic batch of `batch` x `seq_len` steps in segments of `segment`; `layout` replaces the preset's,
    `overrides` update the backbone's constructor arguments (e.g. mamba2's kernel)."""
    preset = get_preset(preset_name)
    recipe = dataclasses.replace(preset.recipe, segment_len=segment, layout=layout or preset.recipe.layout)
    preset = dataclasses.replace(preset, recipe=recipe)
    model, _ = build_model(arch, preset, seed=0, overrides=overrides)
    model.to(device).train()
    optimizer = torch.optim.AdamW(parameter_groups(model, recipe.weight_decay), lr=recipe.lr)
    generator = torch.Generator().manual_seed(0)
    data = synthetic_batch(batch, seq_len, preset.data.na, max(preset.data.train_ns), generator)

    def one_step() -> None:
        train_step(model, model, data, recipe, generator, device)
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return model, one_step


def measure(
    arch: str,
    preset_name: str,
    steps: int,
    segment: int,
    seq_len: int,
    batch: int,
    device: torch.device,
    overrides: dict[str, object] | None = None,
) -> dict[str, object]:
    """One row: parameters, seconds per optimiser step (median of `steps` after the first), tokens/s,
    environment steps/s, peak memory of the first step (CUDA: max allocated; CPU: growth of the resident
    set, AdamW's new state included). Run it in a fresh process: memory freed by an earlier model would
    hide this one's growth."""
    model, one_step = training_step(arch, preset_name, segment, seq_len, batch, device, overrides=overrides)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with PeakRSS() as rss:  # the first step: activations, gradients and the new AdamW state
        one_step()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else rss.growth
    times, cpu_times = [], []
    for _ in range(steps):
        started, cpu_started = time.perf_counter(), time.process_time()
        one_step()
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    seconds = statistics.median(times)
    return {
        "backbone": arch,
        "layout": get_preset(preset_name).recipe.layout,
        "params (M)": count_parameters(model) / 1e6,
        "s/step": seconds,
        "cpu s/step": statistics.median(cpu_times),
        "tokens/s": batch * seq_len * model.tokens_per_step / seconds,
        "env steps/s": batch * seq_len / seconds,
        "peak mem (MiB)": peak / 2**20,
    }
