"""The chunkwise training recipe, identical for every backbone (docs/recipe.md).

Each batch of (B, T) sequences is cut into segments of `segment_len` steps; the loss of a
segment is backpropagated at once and the backbone state is carried, detached, to the next
segment; gradients accumulate over the segments and the optimiser steps once per batch.
AdamW (no decay on norms, biases, embeddings), linear warm-up then cosine decay to 10 %,
global gradient clipping; bf16 autocast on CUDA, fp32 on CPU.

Seeded end to end: the data order comes from (seed, epoch), observation masking from a
`torch.Generator` seeded by `seed`, and every piece of state is in the checkpoint, so a resumed
run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from architectures.base import detach_state
from bench import distributed
from bench.distributed import dist_info
from bench.errors import BenchError
from bench.io import atomic_write
from bench.model import ICRLModel
from bench.options import RunOptions
from bench.presets import RecipeSpec
from bench.recipe import LOSS_TERMS, position_weights, prepare_batch, segments, step_losses, term_weights, weighted_sums
from bench.train_log import TrainLog

CHECKPOINT_NAME = "checkpoint.pt"
FINAL_LR_FRACTION = 0.1

BatchSource = Callable[[int, int, int], Iterable[dict[str, torch.Tensor]]]
"""(epoch, rank, world_size) -> the batches of that epoch, in a fixed order (a function of the seed)."""


@dataclass
class TrainResult:
    steps: int
    """Optimiser steps taken in the whole run (including before a resume)."""
    tokens: int
    """Backbone tokens processed in the whole run."""
    final_loss: float
    """Weighted total loss of the last step."""
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, loss) of every step."""
    tokens_per_s: float = 0.0
    """Training throughput over the whole run (tokens / training wall seconds, across resumes)."""
    wall_s: float = 0.0
    """Seconds spent in training over the whole run (across resumes; checkpoint writes included)."""
    peak_memory_bytes: int | None = None
    """Peak CUDA memory allocated on a GPU; on CPU the process's peak resident set size (everything
    it held: libraries, data and model)."""


def peak_rss_bytes() -> int:
    """The peak resident set size of this process so far (Linux reports it in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier at optimiser step `step` (0-based): linear warm-up to 1, then
    cosine decay to FINAL_LR_FRACTION at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices of linear/conv layers; none on norms, biases, embeddings."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 and id(param) not in embedding_ids else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_step(
    model: nn.Module,
    core: ICRLModel,
    batch: dict[str, torch.Tensor],
    recipe: RecipeSpec,
    generator: torch.Generator,
    device: torch.device,
) -> dict[str, float]:
    """Forward/backward over every segment of one batch (gradients accumulate); returns the weighted
    loss ("loss") and each term's weighted mean (`LOSS_TERMS`: policy cross-entropy, next-observation
    cross-entropy, reward MSE), averaged over ranks. `model` may be a DDP wrapper of `core`."""
    prepared = {
        k: v.to(device)
        for k, v in prepare_batch(batch, core.mask_id, recipe.obs_mask_prob, generator, dist_info()).items()
    }
    n, length = prepared["obs"].shape
    weights = position_weights(length, recipe.position_ramp_steps).to(device).expand(n, length)
    totals = distributed.ddp_denominators({k: w.sum() for k, w in term_weights(weights, prepared).items()})
    totals["obs"] = totals["obs"].clamp(min=1.0)
    loss_weights = dict(zip(LOSS_TERMS, recipe.loss_weights))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    state = None
    total = 0.0
    parts = dict.fromkeys(LOSS_TERMS, 0.0)
    last_start = (length - 1) // recipe.segment_len * recipe.segment_len
    for start, segment in segments(prepared, recipe.segment_len):
        sync = contextlib.nullcontext() if start == last_start or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast:
                outputs, state = model(segment, state)
            span = weights[:, start : start + recipe.segment_len]
            sums = weighted_sums(step_losses(outputs, segment), term_weights(span, segment))
            loss = sum(loss_weights[k] * sums[k] / totals[k] for k in sums)
            loss.backward()
        state = detach_state(state)
        total += float(loss.detach())
        for k in sums:
            parts[k] += float(sums[k].detach() / totals[k])
    means = distributed.mean_across_ranks([total, *parts.values()], device)
    return dict(zip(("loss", *parts), means))


def save_checkpoint(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, buffer.getvalue())


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint, so that a resumed run continues exactly."""

    step: int = 0
    """Optimiser steps taken."""
    epoch: int = 0
    """Current pass over the data."""
    position: int = 0
    """Batches of the current epoch already used."""
    tokens: int = 0
    """Backbone tokens processed."""
    wall_s: float = 0.0
    """Training seconds before the current process started (earlier sessions of a resumed run)."""
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, loss) of every step."""


def optimiser(model: nn.Module, recipe: RecipeSpec) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (betas 0.9, 0.95) with the recipe's warm-up and cosine schedule."""
    optimizer = torch.optim.AdamW(parameter_groups(model, recipe.weight_decay), lr=recipe.lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, recipe.warmup_steps, recipe.train_steps)
    )
    return optimizer, scheduler


def train(
    model: ICRLModel,
    recipe: RecipeSpec,
    batches: BatchSource,
    checkpoint_dir: Path,
    options: RunOptions | None = None,
    seed: int = 0,
    on_step: Callable[[int], None] | None = None,
    meta: dict | None = None,
) -> TrainResult:
    """Run the recipe on `model` (in place) for `recipe.train_steps` optimiser steps.

    `checkpoint_dir` holds `checkpoint.pt` (written atomically by rank 0; read back with
    `options.resume`) and the live log `metrics.csv` (`bench.train_log`); `seed` seeds observation
    masking (data order and weights are seeded by their builders); `on_step(step)` is called after
    each optimiser step (tests use it to interrupt); `meta` (what the run is: preset, arch, seed) is
    stored in every checkpoint, so that `bench eval` can refuse a checkpoint of another run."""
    options = options or RunOptions()
    rank, world_size = dist_info()
    if recipe.batch_size % world_size:
        raise BenchError(f"batch_size={recipe.batch_size} must be divisible by world_size={world_size}")
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.set_num_threads(options.threads or available_cores())
    model.to(device)
    wrapped: nn.Module = model
    if world_size > 1:
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    optimizer, scheduler = optimiser(model, recipe)
    generator = torch.Generator().manual_seed(seed)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME
    progress = Progress()
    if checkpoint.exists() and not (options.resume or options.restart):
        saved_step = torch.load(checkpoint, map_location="cpu", weights_only=False).get("step", "?")
        raise BenchError(
            f"{checkpoint} holds a run at step {saved_step} of {recipe.train_steps}; pass --resume to continue it "
            "or --restart to start over (it is not overwritten otherwise)"
        )
    if options.resume and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        generator.set_state(saved["mask_generator"])
        progress = Progress(**{f.name: saved[f.name] for f in dataclasses.fields(Progress)})
        progress.loss_curve = [tuple(p) for p in progress.loss_curve]
    mask_rng_after_step = generator.get_state()  # what a checkpoint stores, even mid-step
    started, start_tokens = time.perf_counter(), progress.tokens

    def write_checkpoint() -> None:
        if rank == 0:
            saved = dataclasses.replace(progress, wall_s=progress.wall_s + time.perf_counter() - started)
            save_checkpoint(
                checkpoint,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "mask_generator": mask_rng_after_step,
                    "meta": meta or {},
                    **dataclasses.asdict(saved),
                },
            )

    from tqdm import tqdm

    bar = tqdm(
        total=recipe.train_steps,
        initial=progress.step,
        disable=not options.progress or rank != 0,
        unit="step",
        dynamic_ncols=True,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    log = TrainLog(Path(checkpoint_dir), progress.step, options.wandb) if rank == 0 else None
    model.train()
    try:
        for batch in _remaining_batches(batches, progress, recipe.train_steps, rank, world_size):
            losses = train_step(wrapped, model, batch, recipe, generator, device)
            loss = losses["loss"]
            lr = scheduler.get_last_lr()[0]
            if not math.isfinite(loss):
                optimizer.zero_grad(set_to_none=True)
                kept = f"last good checkpoint: {checkpoint}" if checkpoint.exists() else "no checkpoint was written yet"
                raise BenchError(f"training loss is {loss} at step {progress.step + 1}; stopped ({kept})")
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            mask_rng_after_step = generator.get_state()
            progress.step += 1
            progress.position += 1
            progress.tokens += batch["obs"].numel() * model.tokens_per_step * world_size
            progress.loss_curve.append((progress.step, loss))
            elapsed = time.perf_counter() - started
            tokens_per_s = (progress.tokens - start_tokens) / max(elapsed, 1e-9)
            bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:.0f}")
            if log is not None:
                wall_s = progress.wall_s + elapsed
                log.write({"step": progress.step, **losses, "lr": lr, "tokens_per_s": tokens_per_s, "wall_s": wall_s})
            bar.update(1)
            if progress.step % recipe.checkpoint_every == 0 or progress.step == recipe.train_steps:
                write_checkpoint()
            if on_step is not None:
                on_step(progress.step)
    except KeyboardInterrupt:
        write_checkpoint()
        bar.close()
        if rank == 0:
            print(f"\ninterrupted: step {progress.step} saved to {checkpoint}", file=sys.stderr, flush=True)
        raise
    finally:
        if log is not None:
            log.close()
    bar.close()
    wall = progress.wall_s + time.perf_counter() - started
    return TrainResult(
        steps=progress.step,
        tokens=progress.tokens,
        final_loss=progress.loss_curve[-1][1] if progress.loss_curve else float("nan"),
        loss_curve=progress.loss_curve,
        tokens_per_s=progress.tokens / wall if wall > 0 else 0.0,
        wall_s=wall,
        peak_memory_bytes=int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else peak_rss_bytes(),
    )


def _remaining_batches(
    batches: BatchSource, progress: Progress, train_steps: int, rank: int, world_size: int
) -> Iterator[dict[str, torch.Tensor]]:
    """The batches still to train on, epoch after epoch, skipping those a resumed run has used;
    `progress.epoch` and `progress.position` advance as epochs end (the caller counts batches)."""
    while progress.step < train_steps:
        seen = 0
        for batch in batches(progress.epoch, rank, world_size):
            seen += 1
            if seen <= progress.position:  # resuming inside an epoch: skip what was already used
                continue
            if progress.step >= train_steps:
                return
            yield batch
        if seen == 0:
            raise BenchError(f"the batch source yielded no batch in epoch {progress.epoch}; is the dataset empty?")
        progress.epoch, progress.position = progress.epoch + 1, 0
