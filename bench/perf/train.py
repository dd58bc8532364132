"""`python -m bench perf train --preset paper --steps 2 --segment 2048`: the whole recipe's speed.

Times complete optimiser steps of `bench.train.train_step` (embeddings, backbone, heads, losses,
backward over every segment with carried state, clipping, AdamW) for each backbone at a preset's
model size, on synthetic batches of `--batch` sequences of `--seq-len` steps. Prints seconds per
step (wall and, on CPU, process CPU time: the steadier number on a shared machine), tokens/s,
peak memory of the first step (CUDA: max allocated; CPU: growth of the resident set, which
includes the AdamW state created by that step), and the time one iteration of the preset would
take on this device at the same tokens/s (`preset batch / world size` sequences of `seq_len`
steps per process). See docs/gpu.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from architectures import REGISTRY, SIZES, count_parameters
from bench.errors import BenchError
from bench.model import build_model
from bench.perf.common import PeakRSS
from bench.presets import PRESETS, get_preset
from bench.recipe import LAYOUTS
from bench.report.table import format_table
from bench.train import parameter_groups, train_step


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", default="small", help=f"model size and recipe: {', '.join(PRESETS)} (default small)"
    )
    parser.add_argument(
        "--arch", nargs="+", default=None, help="backbones (default: every registered one with settings for the preset)"
    )
    parser.add_argument(
        "--steps", type=int, default=2, help="timed optimiser steps, after one warm-up step (default 2)"
    )
    parser.add_argument(
        "--segment", type=int, default=None, help="steps per segment (default: the preset's segment_len)"
    )
    parser.add_argument("--seq-len", type=int, default=None, help="steps per sequence (default: one segment)")
    parser.add_argument("--batch", type=int, default=1, help="sequences per optimiser step in this process (default 1)")
    parser.add_argument(
        "--world-size",
        type=int,
        default=8,
        help="GPUs the preset's global batch is split over for the iteration estimate (default 8)",
    )
    parser.add_argument(
        "--layout",
        nargs="+",
        default=None,
        choices=list(LAYOUTS),
        help="token layouts to time side by side (default: the preset's)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's choice)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")


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


def measure(
    arch: str,
    preset_name: str,
    steps: int,
    segment: int,
    seq_len: int,
    batch: int,
    device: torch.device,
    threads: int | None,
    layout: str | None = None,
    overrides: dict[str, object] | None = None,
) -> dict[str, object]:
    """One row: parameters, seconds per optimiser step (median), tokens/s, environment steps/s, peak
    memory; `overrides` update the backbone's constructor arguments (e.g. mamba2's kernel). Run it in
    a fresh process: memory freed by an earlier model would hide this one's growth."""
    if threads is not None:
        torch.set_num_threads(threads)
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
    tokens = batch * seq_len * model.tokens_per_step
    return {
        "backbone": arch,
        "layout": recipe.layout,
        "params (M)": count_parameters(model) / 1e6,
        "s/step": seconds,
        "cpu s/step": statistics.median(cpu_times),
        "tokens/s": tokens / seconds,
        "env steps/s": batch * seq_len / seconds,
        "peak mem (MiB)": peak / 2**20,
    }


def main(args: argparse.Namespace) -> int:
    preset = get_preset(args.preset)
    for name, value in (
        ("--steps", args.steps),
        ("--batch", args.batch),
        ("--world-size", args.world_size),
        ("--segment", args.segment or 1),
        ("--seq-len", args.seq_len or 1),
        ("--threads", args.threads or 1),
    ):
        if value < 1:
            raise BenchError(f"{name}={value}; accepted: a positive integer")
    segment = args.segment or preset.recipe.segment_len
    seq_len = args.seq_len or segment
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = args.arch or [n for n in REGISTRY if args.preset in SIZES.get(n, {})]
    per_process = -(-preset.recipe.batch_size // args.world_size)
    rows = []
    for name, layout in [(name, layout) for name in names for layout in args.layout or [None]]:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            row = pool.submit(
                measure, name, args.preset, args.steps, segment, seq_len, args.batch, device, args.threads, layout
            ).result()
        # same tokens/s: time scales with the steps per process (linear in T for the recurrent backbones)
        row[f"s/iteration at {preset.name} ({per_process} x {preset.data.seq_len})"] = (
            row["s/step"] * per_process * preset.data.seq_len / (args.batch * seq_len)
        )
        rows.append(row)
        print(f"[perf train] {name} ({row['layout']}): {row['s/step']:.3f} s/step", flush=True)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {args.threads or torch.get_num_threads()} threads"
    )
    print(
        f"\nrecipe steps of preset {preset.name}: batch {args.batch} x {seq_len} steps, segments of {segment}, "
        f"{args.steps} timed steps after 1 warm-up, on {where}"
    )
    print(format_table(rows, markdown=args.markdown))
    return 0
