"""Several processes, one run: process-group setup from torchrun's environment, rank helpers, and
collectives whose failures are one-line errors (docs/distributed.md).

Launched by `torchrun` (environment WORLD_SIZE > 1), `bench run` joins a process group: NCCL
when the run uses CUDA (one GPU per local rank), gloo on CPU. Every rank trains on its slice of
each global batch (DDP averages the gradients), only rank 0 writes checkpoints, results and the
leaderboard, and every collective that fails because another rank died or timed out becomes a
one-line `BenchError` on the ranks that are still alive. Without torchrun nothing here does
anything: `dist_info()` is (0, 1).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from bench.errors import USER_ERRORS, BenchError

TIMEOUT_ENV = "BENCH_DIST_TIMEOUT_S"
"""Seconds a collective waits for the other ranks before failing (default DEFAULT_TIMEOUT_S)."""
DEFAULT_TIMEOUT_S = 1800
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""Set by torchrun for every worker, next to WORLD_SIZE."""

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the run."""

    rank: int
    """Global rank (0 writes every file)."""
    world_size: int
    """Number of processes (1: not distributed)."""
    local_rank: int
    """Rank on this machine (picks the GPU)."""
    device: str | None
    """torch device this rank uses (None: the caller's default)."""
    backend: str | None
    """"nccl", "gloo", or None when not distributed."""
    threads: int | None
    """Suggested torch threads per rank on CPU (the cores shared by the local ranks), else None."""


def dist_info() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (or when not distributed): the rank that writes files."""
    return dist_info()[0] == 0


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise BenchError(
                f"environment variable {name} is not set; launch with torchrun (it sets {', '.join(TORCHRUN_VARS)})"
            )
        return default
    try:
        return int(value)
    except ValueError:
        raise BenchError(f"environment variable {name}={value!r}; accepted: an integer") from None


def timeout_s() -> int:
    """Collective timeout in seconds, from BENCH_DIST_TIMEOUT_S (default 1800)."""
    value = _env_int(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)
    if value < 1:
        raise BenchError(f"{TIMEOUT_ENV}={value}; accepted: a positive number of seconds")
    return value


def setup(device: str | None = None) -> DistContext:
    """Join the process group described by torchrun's environment variables, if WORLD_SIZE > 1.

    `device`: "cpu", "cuda" or None (cuda if available). On CUDA each rank takes GPU LOCAL_RANK
    and the backend is NCCL; on CPU the backend is gloo."""
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size < 1:
        raise BenchError(f"WORLD_SIZE={world_size}; accepted: a positive integer")
    if world_size == 1:
        return DistContext(0, 1, 0, device, None, None)
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise BenchError(
                f"environment variable {name} is not set; launch with torchrun (it sets {', '.join(TORCHRUN_VARS)})"
            )
    if not 0 <= rank < world_size:
        raise BenchError(f"RANK={rank}; accepted: 0 <= RANK < WORLD_SIZE={world_size}")
    use_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    threads = None
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise BenchError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPU(s); "
                "use --nproc_per_node <= the GPU count"
            )
        device, backend = f"cuda:{local_rank}", "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = "cpu", "gloo"
        local_world = _env_int("LOCAL_WORLD_SIZE", world_size)
        threads = max(1, len(os.sched_getaffinity(0)) // max(1, local_world)) if hasattr(os, "sched_getaffinity") else 1
    if not dist.is_initialized():
        dist.init_process_group(
            backend, init_method="env://", rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s())
        )
    return DistContext(rank, world_size, local_rank, device, backend, threads)


def teardown() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str | None = None) -> Iterator[DistContext]:
    """`setup(device)` on entry, `teardown()` on exit, also after an error."""
    context = setup(device)
    try:
        yield context
    finally:
        teardown()


# ---- collectives that fail in one line -----------------------------------------------------------


def _collective(what: str, fn: Callable[[], T]) -> T:
    """Run a collective; a dead or stuck peer becomes a BenchError naming `what`."""
    try:
        return fn()
    except RuntimeError as err:  # gloo/NCCL: peer closed the connection, timeout, aborted communicator
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BenchError(
            f"rank {dist_info()[0]}: lost contact with another rank during {what} (a rank died or did not answer "
            f"within {timeout_s()} s): {first}"
        ) from None


def all_gather_tensors(tensor: torch.Tensor, what: str) -> list[torch.Tensor]:
    """`tensor` of every rank (same shape on each), in rank order."""
    parts = [torch.empty_like(tensor) for _ in range(dist_info()[1])]
    _collective(what, lambda: dist.all_gather(parts, tensor))
    return parts


def all_gather_objects(obj: Any, what: str) -> list[Any]:
    """`obj` of every rank, in rank order (a list of one when not distributed)."""
    rank, world_size = dist_info()
    if world_size == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size
    _collective(what, lambda: dist.all_gather_object(gathered, obj))
    return gathered


def barrier(what: str) -> None:
    """Wait for every rank (no-op when not distributed)."""
    if dist_info()[1] > 1:
        _collective(what, dist.barrier)


def sum_across_ranks(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """Element-wise sum of `tensor` over ranks (a copy; the tensor itself when not distributed)."""
    if dist_info()[1] == 1:
        return tensor
    total = tensor.detach().clone()
    _collective(what, lambda: dist.all_reduce(total, op=dist.ReduceOp.SUM))
    return total


def mean_across_ranks(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """The mean of each float over ranks, in one collective (every rank gets the same numbers)."""
    world_size = dist_info()[1]
    if world_size == 1:
        return list(values)
    summed = sum_across_ranks(torch.tensor(values, dtype=torch.float64, device=device), "the loss average")
    return [float(v) / world_size for v in summed.cpu()]


def collective(what: str, fn: Callable[[], T]) -> T:
    """Run `fn` on every rank; if it raises a user error (`USER_ERRORS`) on any rank, raise a BenchError on every rank.

    The error names each failing rank and its message, so the same line appears in every
    rank's log instead of one rank failing while the others wait in the next collective."""
    result, error = None, None
    try:
        result = fn()
    except USER_ERRORS as err:
        error = str(err)
    errors = all_gather_objects(error, what)
    failed = [f"rank {r}: {message}" for r, message in enumerate(errors) if message is not None]
    if failed:
        if dist_info()[1] == 1:
            raise BenchError(errors[0])
        raise BenchError(f"{what} failed on {len(failed)} of {len(errors)} ranks: " + "; ".join(failed))
    return result


def ddp_denominators(totals: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Loss denominators under DDP: each global-batch total (summed over ranks) / world_size.

    DDP averages gradients over ranks, so sum_r (sum_r-loss / (G / W)) / W = (global loss sum) / G:
    the gradient of the one-process loss of the whole global batch, even where ranks hold
    different totals (the next-observation loss counts only steps inside an episode)."""
    world_size = dist_info()[1]
    if world_size == 1:
        return dict(totals)
    names = sorted(totals)
    summed = sum_across_ranks(torch.stack([totals[k].detach().float() for k in names]), "the loss normalisation")
    return {k: summed[i] / world_size for i, k in enumerate(names)}


def check_batch_divides(batch_size: int) -> None:
    """A BenchError (the same on every rank) unless the world size divides the global batch."""
    world_size = dist_info()[1]
    if batch_size % world_size:
        divisors = [n for n in range(1, batch_size + 1) if batch_size % n == 0]
        raise BenchError(
            f"batch_size={batch_size} is not divisible by world_size={world_size}; "
            f"launch with a world size in {divisors} or change the preset's batch_size"
        )
