"""`python -m bench gpu-check [--out results/gpu] [--budget 450] [--parts ...]`: the GPU checks, in one command.

On one CUDA GPU, in at most `--budget` seconds (default 450 s: with start-up and report, within
8 minutes), four parts, each reported as it ends in `<out>/gpu-check.json` and `gpu-check.md`:

1. tests: `python -m pytest -m gpu` in a subprocess: passed, failed, skipped counts, failing ids;
2. kernels: each backbone's fast path against its PyTorch path on the same weights and inputs
   (fla's Triton kernels vs `use_fla=False`; mamba2 also mamba-ssm's kernel when installed; for
   transformer and lstm, PyTorch's CUDA kernels vs the CPU), a carried state, forward + backward,
   in fp32 and under bf16 autocast: relative errors of outputs, final states and parameter
   gradients against `TOLERANCES`;
3. speed: tokens/s and peak memory of one training step of every backbone at the small size and at
   the paper's (`SPEED_SIZES`), one subprocess of `bench.perf.train.measure` each;
4. train: `TRAIN_STEPS` steps of the small preset's recipe and gdn model on a build of its first
   `TRAIN_TASKS` DPD training tasks; the loss must fall (`loss_falls`).

Every part has a share of the budget (`SHARES`); what a part leaves unused passes on to the next.
A row (or part) that would overrun is skipped with a note; a subprocess is stopped at the part's
deadline. See docs/gpu.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import inspect
import json
import math
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import torch

from architectures import REGISTRY, SIZES, State, build_backbone, resolve
from architectures.ops.mamba2 import mamba_ssm_available
from bench.data import ensure_data
from bench.data.behavior import N_TAGS
from bench.data.loader import ShardedSequences, batch_loader
from bench.errors import BenchError
from bench.io import atomic_write, atomic_write_json
from bench.model import build_model
from bench.options import RunOptions
from bench.perf.train import measure
from bench.presets import get_preset
from bench.report.table import format_table
from bench.train import available_cores, train
from bench.train_log import LOG_NAME, read_log

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
FORMAT = "gpu-check/1"
PARTS = ("tests", "kernels", "speed", "train")
SHARES = {"tests": 0.2, "kernels": 0.1, "speed": 0.4, "train": 0.3}
"""Share of the budget of each part (renormalised over the parts that run)."""
DEFAULT_BUDGET_S = 450.0
MIN_PART_S = 10.0
"""A part with less time left than this is skipped."""
INTERRUPT_GRACE_S = 15.0
"""Seconds pytest gets, after a SIGINT at the tests part's deadline, to report and write its results."""

TOLERANCES = {
    "fp32": {"output": 5e-3, "state": 5e-3, "grad": 2e-2},
    "bf16": {"output": 3e-2, "state": 3e-2, "grad": 5e-2},
}
"""Largest relative error (norm of the difference / norm of the reference) of a fast path against
the PyTorch path, at the small size, after a carried prefix. fp32: fla's kernels compute float32
dots in TF32 (10-bit mantissa; the op-level GPU tests allow 1e-3 to 2e-3 for outputs and 1e-2 for
gradients), cuDNN's LSTM too. bf16: both paths run under bf16 autocast, whose rounding alone moves
outputs by 3e-3 to 1.4e-2 from float32 (check-arch); the paths round differently inside the scan.
Set before any GPU run; narrow them to the measured errors once the report has them."""
PROBE_SHAPE = (2, 200, 300)
"""Batch, prefix steps (forward without gradient: the carried state), segment steps (forward + backward)."""
DTYPES = ("fp32", "bf16")


@dataclass(frozen=True)
class SpeedSize:
    size: str
    """Preset whose model, recipe and backbone size are timed."""
    batch: int
    seq_len: int
    segment: int


SPEED_SIZES = (SpeedSize("small", 16, 4096, 1024), SpeedSize("paper", 5, 12_288, 2048))
"""The small preset's whole batch on one GPU, and the paper's per-GPU iteration (40 sequences over 8 GPUs)."""
SPEED_STEPS = 2
"""Timed optimiser steps per row, after one warm-up step."""
PAPER_S_PER_ITERATION = 8.0
"""The paper's time per iteration (T 12K, batch 5 per GPU) on A800 GPUs, about 8 s (docs/gpu.md)."""
SPEED_GUESS_S = {"small": 30.0, "paper": 60.0}
"""Seconds a speed row is assumed to take before one of its size has been timed."""
KERNEL_GUESS_S = 10.0
ROW_MARKER = "GPU-CHECK-ROW "
"""Prefix of the line on which a speed subprocess prints its row as JSON."""

TRAIN_ARCH = "gdn"
TRAIN_PRESET = "small"
TRAIN_STEPS = 200
TRAIN_TASKS = 256
"""Training tasks built (200 batches of 16 pass over them 12.5 times): 23 s with 2 workers on the 2-core CPU machine."""
LOSS_WINDOW = 20
DATA_CPU_S_PER_TASK = 0.09
"""CPU seconds to synthesise one small-preset sequence of 4,096 steps (0.08-0.09 s measured on the
2-core machine, process start-up included), for the training part's estimate."""
DATA_START_S = 5.0


# --- budget ----------------------------------------------------------------------------------------


@dataclass
class Budget:
    """Cumulative deadlines: part k may run until `start` + `total` x (shares of the parts up to k) /
    (shares of all parts), so time an earlier part leaves unused passes on to the later ones."""

    parts: Sequence[str]
    total: float
    start: float
    clock: Callable[[], float] = time.monotonic

    def deadline(self, part: str) -> float:
        shares = [SHARES[p] for p in self.parts]
        done = sum(shares[: list(self.parts).index(part) + 1])
        return self.start + self.total * done / sum(shares)

    def left(self, part: str) -> float:
        return self.deadline(part) - self.clock()


def run_within(
    items: Sequence[T],
    run: Callable[[T, float], dict],
    describe: Callable[[T], dict],
    left: Callable[[], float],
    guess: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict]:
    """`run(item, seconds_left)` for each item in turn, each row prefixed by `describe(item)`. An item
    is skipped (status "skipped", with a note) when the longest run so far (before any: `guess`)
    would not fit in the time left."""
    rows, longest = [], None
    for item in items:
        needed, remaining = guess if longest is None else longest, left()
        if needed > remaining:
            note = f"would overrun: about {needed:.0f} s needed, {max(remaining, 0):.0f} s left"
            rows.append({**describe(item), "status": "skipped", "note": note})
            continue
        started = clock()
        rows.append({**describe(item), **run(item, remaining)})
        longest = max(longest or 0.0, clock() - started)
    return rows


def part_status(rows: Sequence[dict]) -> str:
    """failed (a row failed or broke), incomplete (a row was skipped or stopped), passed, or skipped (no row ran)."""
    statuses = {row["status"] for row in rows} - {"unavailable"}
    if statuses & {"failed", "error"}:
        return "failed"
    if statuses & {"skipped", "timed out"}:
        return "incomplete"
    return "passed" if statuses else "skipped"


def overall_status(parts: dict[str, dict]) -> str:
    """failed (a part failed or broke), incomplete (a part was skipped or did not finish), or passed."""
    statuses = {part["status"] for part in parts.values()}
    if statuses & {"failed", "error"}:
        return "failed"
    return "incomplete" if statuses & {"incomplete", "skipped"} else "passed"


# --- part 1: the GPU tests -------------------------------------------------------------------------


def case_id(classname: str, name: str) -> str:
    """pytest's id of a junit test case: "tests.test_gdn" + "test_x[a]" -> "tests/test_gdn.py::test_x[a]"."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        module = Path(*parts[:end]).with_suffix(".py")
        if (REPO_ROOT / module).is_file():
            return "::".join([module.as_posix(), *parts[end:], name])
    return f"{classname}::{name}"


def parse_junit(text: str) -> dict:
    """Counts (passed, failed, errors, skipped) and the failing tests (id, first line of the message)."""
    counts = dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
    failing = []
    for case in ET.fromstring(text).iter("testcase"):
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        key = {None: "passed", "failure": "failed", "error": "errors", "skipped": "skipped"}[
            None if outcome is None else outcome.tag
        ]
        counts[key] += 1
        if key in ("failed", "errors"):
            message = (outcome.get("message") or outcome.text or "").strip().splitlines()
            failing.append(
                {
                    "id": case_id(case.get("classname", ""), case.get("name", "")),
                    "message": message[0] if message else "",
                }
            )
    return {**counts, "failing": failing}


def run_tests(left: Callable[[], float]) -> dict:
    """`python -m pytest -m gpu` in a subprocess, stopped (SIGINT, then kill) at the deadline."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        note = None
        try:
            output, _ = process.communicate(timeout=max(left() - INTERRUPT_GRACE_S, 1.0))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)  # pytest stops, reports and writes the junit file
            try:
                output, _ = process.communicate(timeout=INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            note = "stopped at the part's deadline: the counts cover the tests that ran"
        if not junit.is_file():
            return {"status": "error", "note": _tail(output)}
        result = parse_junit(junit.read_text())
    if result["failed"] or result["errors"]:
        status = "failed"
    else:
        status = "incomplete" if note else "passed"
    return {"status": status, **result, **({"note": note} if note else {})}


def _tail(text: str, lines: int = 3) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# --- part 2: kernels against the PyTorch path --------------------------------------------------------


@dataclass(frozen=True)
class KernelPath:
    """A backbone's fast path ("fla", "mamba_ssm", or "cuda": PyTorch's own CUDA kernels, cuDNN and
    SDPA) and the PyTorch path it must match (on CUDA; on the CPU for "cuda")."""

    arch: str
    kernel: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    reference_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def reference_on_cpu(self) -> bool:
        return self.kernel == "cuda"

    def describe(self) -> dict:
        return {"backbone": self.arch, "kernel": self.kernel, "reference": "cpu" if self.reference_on_cpu else "torch"}


def kernel_paths() -> list[KernelPath]:
    """fla vs `use_fla=False` for every backbone that has the switch, CUDA vs CPU for the others, and
    mamba2's mamba-ssm kernel vs `kernel="torch"`."""
    paths = [
        KernelPath(arch, "fla", reference_kwargs={"use_fla": False})
        if "use_fla" in inspect.signature(resolve(arch).__init__).parameters
        else KernelPath(arch, "cuda")
        for arch in REGISTRY
    ]
    return [*paths, KernelPath("mamba2", "mamba_ssm", {"kernel": "mamba_ssm"}, {"kernel": "torch"})]


def unavailable(path: KernelPath) -> str | None:
    """Why a path cannot run here, or None."""
    if path.kernel == "fla" and not importlib.import_module(f"architectures.ops.{path.arch}").fla_available():
        return "fla does not import here (pip install -e '.[gpu]')"
    if path.kernel == "mamba_ssm" and not mamba_ssm_available():
        return "mamba-ssm is not installed (pip install --no-build-isolation -e '.[mamba]')"
    return None


@dataclass
class PathResult:
    """One path's output, final state (floating-point leaves) and parameter gradients, on the CPU in float64."""

    output: torch.Tensor
    state: list[torch.Tensor]
    grads: dict[str, torch.Tensor]


def float_leaves(state: State) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state] if state.is_floating_point() else []
    values = state.values() if isinstance(state, dict) else state
    return [leaf for value in values for leaf in float_leaves(value)]


def forward_backward(
    model: torch.nn.Module, x: torch.Tensor, prefix: torch.Tensor, probe: torch.Tensor, bf16: bool
) -> PathResult:
    """Forward the prefix without gradient (the carried state), then the segment from that state, and
    backpropagate sum(y * probe) + sum(final state leaves * fixed random weights)."""
    device = next(model.parameters()).device
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        with torch.no_grad():
            _, state = model(prefix.to(device))
        y, final = model(x.to(device), state)
    leaves = float_leaves(final)
    weights = [torch.randn(leaf.shape, generator=torch.Generator().manual_seed(i)) for i, leaf in enumerate(leaves)]
    loss = (y.float() * probe.to(device)).sum()
    loss = loss + sum((leaf.float() * w.to(device)).sum() for leaf, w in zip(leaves, weights))
    loss.backward()

    def host(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to("cpu", torch.float64)

    grads = {name: host(p.grad) for name, p in model.named_parameters() if p.grad is not None}
    return PathResult(host(y), [host(leaf) for leaf in leaves], grads)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    if got.shape != want.shape:
        return math.inf
    got, want = got.double(), want.double()
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def path_errors(got: PathResult, want: PathResult) -> dict:
    """Relative errors: output; final state (the worst leaf); gradients (all parameters as one vector),
    and the parameter with the worst gradient."""
    same_state = len(got.state) == len(want.state)
    state = max((rel_err(a, b) for a, b in zip(got.state, want.state)), default=0.0) if same_state else math.inf
    if got.grads.keys() != want.grads.keys() or not want.grads:
        grad, worst = math.inf, ("(parameters without gradients)", math.inf)
    else:
        diff = sum(((got.grads[n] - want.grads[n]).norm() ** 2).item() for n in want.grads)
        total = sum((want.grads[n].norm() ** 2).item() for n in want.grads)
        grad = math.sqrt(diff / max(total, 1e-300))
        worst = max(((n, rel_err(got.grads[n], want.grads[n])) for n in want.grads), key=lambda p: p[1])
    output = rel_err(got.output, want.output)
    return {"output": output, "state": state, "grad": grad, "worst_param": worst[0], "worst_param_grad": worst[1]}


def judge(errors: dict, tolerance: dict[str, float]) -> str:
    """passed when every error is within its tolerance (a NaN error fails)."""
    return "passed" if all(errors[key] <= limit for key, limit in tolerance.items()) else "failed"


def compare_path(
    path: KernelPath, dtype: str, size: str = "small", device: str = "cuda", shape: tuple[int, int, int] = PROBE_SHAPE
) -> dict:
    """Errors of `path` against its reference at `size` (seed 0) in `dtype` ("fp32", "bf16"), and the verdict."""
    d_model = get_preset(size).d_model
    fast = build_backbone(path.arch, d_model, size, seed=0, **path.kwargs).to(device)
    reference = build_backbone(path.arch, d_model, size, seed=0, **path.reference_kwargs)
    reference.load_state_dict(fast.state_dict())
    reference.to("cpu" if path.reference_on_cpu else device)
    batch, prefix_len, length = shape
    generator = torch.Generator().manual_seed(1)
    prefix, x, probe = (torch.randn(batch, n, d_model, generator=generator) for n in (prefix_len, length, length))
    bf16 = dtype == "bf16"
    errors = path_errors(
        forward_backward(fast, x, prefix, probe, bf16), forward_backward(reference, x, prefix, probe, bf16)
    )
    return {"dtype": dtype, "status": judge(errors, TOLERANCES[dtype]), **errors}


def run_kernels(left: Callable[[], float]) -> dict:
    paths, rows, items = kernel_paths(), [], []
    for path in paths:
        why = unavailable(path)
        if why:
            rows += [{**path.describe(), "dtype": dtype, "status": "unavailable", "note": why} for dtype in DTYPES]
        else:
            items += [(path, dtype) for dtype in DTYPES]

    def run(item: tuple[KernelPath, str], _left: float) -> dict:
        path, dtype = item
        try:
            row = compare_path(path, dtype)
        except Exception as err:  # a broken kernel is a finding: report it and go on
            row = {"status": "error", "note": _one_line(err)}
        finally:
            torch.cuda.empty_cache()
        print(f"[gpu-check] kernels: {path.arch} {path.kernel} {dtype}: {_kernel_summary(row)}", flush=True)
        return row

    rows += run_within(items, run, lambda item: {**item[0].describe(), "dtype": item[1]}, left, KERNEL_GUESS_S)
    order = {(p.arch, p.kernel): i for i, p in enumerate(paths)}
    rows.sort(key=lambda row: (order[row["backbone"], row["kernel"]], DTYPES.index(row["dtype"])))
    return {"status": part_status(rows), "tolerances": TOLERANCES, "probe_shape": list(PROBE_SHAPE), "rows": rows}


def _kernel_summary(row: dict) -> str:
    if "output" not in row:
        return f"{row['status']} ({row.get('note', '')})"
    return f"{row['status']} (output {row['output']:.1e}, state {row['state']:.1e}, grad {row['grad']:.1e})"


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


# --- part 3: speed -----------------------------------------------------------------------------------


def default_kernel(arch: str) -> str:
    """What a training step of `arch` runs on CUDA by default: fla, torch (fla missing) or cuda."""
    path = next(p for p in kernel_paths() if p.arch == arch)
    return "torch" if path.kernel == "fla" and unavailable(path) else path.kernel


def speed_items() -> list[tuple[SpeedSize, str, dict]]:
    """(size, backbone, constructor overrides): every backbone with settings for the size; mamba2
    also with mamba-ssm's kernel when it is installed."""
    items = []
    for size in SPEED_SIZES:
        items += [(size, arch, {}) for arch in REGISTRY if size.size in SIZES.get(arch, {})]
        if mamba_ssm_available():
            items.append((size, "mamba2", {"kernel": "mamba_ssm"}))
    return items


def measure_subprocess(size: SpeedSize, arch: str, overrides: dict, timeout: float) -> dict:
    """`bench.perf.train.measure` in a fresh process (its peak memory is this row's alone), killed at `timeout`."""
    spec = {"arch": arch, "overrides": overrides, **dataclasses.asdict(size)}
    command = [sys.executable, "-m", "bench.gpu_check", "--measure", json.dumps(spec)]
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timed out", "note": f"stopped after {timeout:.0f} s (the part's deadline)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith(ROW_MARKER)]
    if done.returncode or not lines:
        return {"status": "error", "note": _tail(done.stderr or done.stdout, 1)}
    row = json.loads(lines[-1][len(ROW_MARKER) :])
    return {
        "status": "measured",
        "params_m": row["params (M)"],
        "s_per_step": row["s/step"],
        "tokens_per_s": row["tokens/s"],
        "env_steps_per_s": row["env steps/s"],
        "peak_gib": row["peak mem (MiB)"] / 1024,
    }


def measure_worker(spec_json: str) -> int:
    """`python -m bench.gpu_check --measure SPEC`: one `measure` row, printed after `ROW_MARKER`."""
    spec = json.loads(spec_json)
    row = measure(
        spec["arch"],
        spec["size"],
        SPEED_STEPS,
        spec["segment"],
        spec["seq_len"],
        spec["batch"],
        torch.device("cuda"),
        overrides=spec["overrides"],
    )
    print(ROW_MARKER + json.dumps(row), flush=True)
    return 0


def run_speed(left: Callable[[], float]) -> dict:
    def describe(item: tuple[SpeedSize, str, dict]) -> dict:
        size, arch, overrides = item
        return {
            "size": size.size,
            "backbone": arch,
            "kernel": overrides.get("kernel", default_kernel(arch)),
            "batch": size.batch,
            "seq_len": size.seq_len,
            "segment": size.segment,
        }

    def run(item: tuple[SpeedSize, str, dict], seconds_left: float) -> dict:
        row = measure_subprocess(*item, timeout=seconds_left)
        done = f"{row['s_per_step']:.2f} s/step" if "s_per_step" in row else row.get("note", "")
        print(
            f"[gpu-check] speed: {item[0].size} {item[1]} {describe(item)['kernel']}: {row['status']} {done}",
            flush=True,
        )
        return row

    rows = []
    for size in SPEED_SIZES:
        items = [item for item in speed_items() if item[0] == size]
        rows += run_within(items, run, describe, left, SPEED_GUESS_S[size.size])
    return {
        "status": part_status(rows),
        "steps": SPEED_STEPS,
        "paper_s_per_iteration": PAPER_S_PER_ITERATION,
        "rows": rows,
    }


# --- part 4: train -----------------------------------------------------------------------------------


class OutOfTime(Exception):
    """Raised from `train`'s step callback at the part's deadline."""


def loss_falls(curve: Sequence[Sequence[float]], window: int = LOSS_WINDOW) -> dict:
    """Mean loss of the first and of the last `window` steps of (step, loss) pairs; passed when the last is lower."""
    losses = [loss for _, loss in curve]
    if len(losses) < 2 * window:
        return {"status": "failed", "note": f"{len(losses)} steps; the check needs {2 * window}"}
    first, last = statistics.fmean(losses[:window]), statistics.fmean(losses[-window:])
    return {"status": "passed" if last < first else "failed", "first_mean": first, "last_mean": last}


def data_estimate_s(tasks: int, workers: int) -> float:
    return DATA_START_S + DATA_CPU_S_PER_TASK * tasks / workers


def run_train(left: Callable[[], float], step_s: float | None, device: str = "cuda") -> dict:
    """`TRAIN_STEPS` steps of the small recipe (gdn) on `device`, stopped at the deadline; `step_s`: the
    speed part's seconds per step of that configuration, for the estimate (None: not measured)."""
    workers = available_cores()
    needed = data_estimate_s(TRAIN_TASKS, workers) + LOSS_WINDOW * 2 * (step_s or 1.0)
    if needed > left():
        return {
            "status": "skipped",
            "note": f"would overrun: about {needed:.0f} s for data and {2 * LOSS_WINDOW} steps, {left():.0f} s left",
        }
    preset = get_preset(TRAIN_PRESET)
    data = dataclasses.replace(
        preset.data, train_tasks=TRAIN_TASKS, valid_tasks=8, shard_size=math.ceil(TRAIN_TASKS / workers)
    )
    recipe = dataclasses.replace(preset.recipe, train_steps=TRAIN_STEPS)
    preset = dataclasses.replace(preset, data=data, recipe=recipe)
    deadline = time.monotonic() + left()

    def on_step(step: int) -> None:
        if time.monotonic() > deadline:
            raise OutOfTime

    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        info = ensure_data(preset, Path(tmp) / "data", progress=False, workers=workers)
        data_s = time.monotonic() - started
        print(f"[gpu-check] train: built {TRAIN_TASKS} tasks in {data_s:.0f} s", flush=True)
        train_set = ShardedSequences(info.root, "train")

        def batches(epoch: int, rank: int, world_size: int):
            return batch_loader(train_set, recipe.batch_size, 0, epoch, rank, world_size)

        model, _ = build_model(TRAIN_ARCH, preset, seed=0, n_prompts=N_TAGS, n_tags=N_TAGS)
        options = RunOptions(run_dir=Path(tmp) / "runs", device=device, progress=False)
        run_dir = Path(tmp) / "run"
        summary: dict[str, Any] = {}
        try:
            result = train(model, recipe, batches, run_dir, options, seed=0, on_step=on_step)
            curve = [list(point) for point in result.loss_curve]
            summary = {"tokens_per_s": result.tokens_per_s, "peak_gib": (result.peak_memory_bytes or 0) / 2**30}
        except OutOfTime:
            curve = [[int(row["step"]), row["loss"]] for row in read_log(run_dir / LOG_NAME)]
    check = loss_falls(curve)
    row = {
        "arch": TRAIN_ARCH,
        "preset": TRAIN_PRESET,
        "tasks": TRAIN_TASKS,
        "steps": len(curve),
        "data_s": data_s,
        "train_s": time.monotonic() - started - data_s,
        **summary,
        **check,
        "loss_curve": curve,
    }
    if len(curve) < TRAIN_STEPS:
        row.update(status="incomplete", note=f"stopped at step {len(curve)} of {TRAIN_STEPS} at the deadline")
    return row


# --- the report --------------------------------------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_output(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def environment() -> dict:
    """The GPU, driver, CUDA and the versions of what the checks run on."""
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_memory_gib": props.total_memory / 2**30,
        "compute_capability": f"{props.major}.{props.minor}",
        "gpus_visible": torch.cuda.device_count(),
        "driver": _command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "fla": _version("fla-core"),
        "mamba_ssm": _version("mamba-ssm"),
        "python": platform.python_version(),
        "commit": _command_output(["git", "rev-parse", "HEAD"]),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _number(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def render_markdown(report: dict) -> str:
    """The report as Markdown: environment, then one section per part that ran."""
    env = report["environment"]
    lines = [
        "# GPU check",
        "",
        f"{env['gpu']} ({_number(env['gpu_memory_gib'], '.0f')} GiB, compute capability {env['compute_capability']}), "
        f"driver {env['driver']}, CUDA {env['cuda']}, torch {env['torch']}, triton {env['triton']}, "
        f"fla {env['fla']}, mamba-ssm {env['mamba_ssm']}, Python {env['python']}; commit {env['commit']}, "
        f"{env['date_utc']}.",
        "",
        f"**{report.get('status', 'running')}**: budget {report['budget_s']:.0f} s, "
        f"took {_number(report.get('wall_s'), '.0f')} s. Written by `python -m bench gpu-check`.",
    ]
    sections = {"tests": _tests_section, "kernels": _kernels_section, "speed": _speed_section, "train": _train_section}
    for name in (part for part in PARTS if part in report["parts"]):  # the run's order, also from sorted JSON
        lines += ["", *sections[name](report["parts"][name])]
    return "\n".join(lines) + "\n"


def _heading(title: str, part: dict) -> list[str]:
    lines = [f"## {title}: {part['status']} ({_number(part.get('wall_s'), '.0f')} s)"]
    return lines + (["", f"{part['note']}."] if part.get("note") else [])


def _tests_section(part: dict) -> list[str]:
    lines = _heading("Tests (`pytest -m gpu`)", part)
    if "passed" in part:
        lines += [
            "",
            f"{part['passed']} passed, {part['failed']} failed, {part['errors']} errors, {part['skipped']} skipped.",
        ]
        lines += [f"- `{test['id']}`: {test['message']}" for test in part["failing"]]
    return lines


def _kernels_section(part: dict) -> list[str]:
    lines = _heading("Kernels vs the PyTorch path (forward + backward)", part)
    if "rows" not in part:
        return lines
    batch, prefix, length = part["probe_shape"]
    limits = "; ".join(
        f"{dtype}: outputs {t['output']:.0e}, states {t['state']:.0e}, gradients {t['grad']:.0e}"
        for dtype, t in part["tolerances"].items()
    )
    lines += [
        "",
        f"Small size, seed 0; batch {batch}, a prefix of {prefix} steps (no gradient) carries the state into "
        f"{length} steps of forward + backward. Relative errors; tolerances {limits}.",
        "",
    ]
    rows = [
        {
            "backbone": row["backbone"],
            "kernel": row["kernel"],
            "vs": row["reference"],
            "dtype": row["dtype"],
            "output": _number(row.get("output"), ".1e"),
            "state": _number(row.get("state"), ".1e"),
            "grad": _number(row.get("grad"), ".1e"),
            "worst gradient": f"{row['worst_param']} {_number(row['worst_param_grad'], '.1e')}"
            if "worst_param" in row
            else "-",
            "status": row["status"],
            "note": row.get("note", ""),
        }
        for row in part["rows"]
    ]
    return [*lines, format_table(rows, markdown=True)]


def _speed_section(part: dict) -> list[str]:
    lines = _heading("Speed: one training step (`bench.perf.train.measure`, bf16 autocast)", part)
    if "rows" not in part:
        return lines
    paper = part["paper_s_per_iteration"]
    lines += [
        "",
        f"Median of {part['steps']} optimiser steps after a warm-up; peak memory: CUDA max allocated. At the "
        f"paper size a step is one iteration of the paper (5 sequences of 12,288 steps per GPU, ~{paper:.0f} s "
        "on an A800); `vs paper` is s/step divided by that.",
        "",
    ]
    rows = [
        {
            "size": row["size"],
            "backbone": row["backbone"],
            "kernel": row["kernel"],
            "batch x T (segment)": f"{row['batch']} x {row['seq_len']} ({row['segment']})",
            "params (M)": _number(row.get("params_m"), ".2f"),
            "s/step": _number(row.get("s_per_step"), ".3f"),
            "tokens/s": _number(row.get("tokens_per_s"), ",.0f"),
            "peak (GiB)": _number(row.get("peak_gib"), ".2f"),
            "vs paper": _number(row["s_per_step"] / paper, ".2f")
            if row["size"] == "paper" and "s_per_step" in row
            else "-",
            "status": row["status"],
            "note": row.get("note", ""),
        }
        for row in part["rows"]
    ]
    return [*lines, format_table(rows, markdown=True)]


def _train_section(part: dict) -> list[str]:
    lines = _heading(f"Training: {TRAIN_STEPS} steps of the {TRAIN_PRESET} recipe ({TRAIN_ARCH})", part)
    if "loss_curve" not in part:
        return lines
    lines += [
        "",
        f"{part['tasks']} training tasks built in {part['data_s']:.0f} s; {part['steps']} steps in "
        f"{part['train_s']:.0f} s, {_number(part.get('tokens_per_s'), ',.0f')} tokens/s, peak "
        f"{_number(part.get('peak_gib'), '.2f')} GiB. Mean loss of the first {LOSS_WINDOW} steps "
        f"{_number(part.get('first_mean'), '.4f')}, of the last {LOSS_WINDOW} {_number(part.get('last_mean'), '.4f')}.",
        "",
        "| step | loss |",
        "| --- | --- |",
    ]
    curve = part["loss_curve"]
    stride = max(1, len(curve) // 10)
    shown = [point for i, point in enumerate(curve) if i % stride == 0 or i == len(curve) - 1]
    return lines + [f"| {int(step)} | {_number(loss, '.4f')} |" for step, loss in shown]


def _finite(value: Any) -> Any:
    """The report with NaN and infinities as None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_report(report: dict, out: Path) -> None:
    atomic_write_json(out / "gpu-check.json", _finite(report))
    atomic_write(out / "gpu-check.md", render_markdown(report).encode())


# --- the command -------------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("results/gpu"), help="report folder (default results/gpu)")
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"seconds for all parts (default {DEFAULT_BUDGET_S:.0f}; with start-up, within 8 minutes)",
    )
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default all)")


def main(args: argparse.Namespace) -> int:
    if not torch.cuda.is_available():
        raise BenchError(f"gpu-check needs a CUDA GPU; none is visible here (torch {torch.__version__})")
    if not args.budget > 0:
        raise BenchError(f"--budget={args.budget}; accepted: a positive number of seconds")
    started = time.monotonic()
    parts = [part for part in PARTS if part in args.parts]
    budget = Budget(parts, args.budget, started)
    report: dict[str, Any] = {"format": FORMAT, "environment": environment(), "budget_s": args.budget, "parts": {}}
    print(f"[gpu-check] {report['environment']['gpu']}, torch {torch.__version__}: {', '.join(parts)}", flush=True)
    for part in parts:
        part_started = time.monotonic()
        print(f"[gpu-check] {part}: up to {budget.left(part):.0f} s", flush=True)
        result = run_part(part, lambda part=part: budget.left(part), report["parts"])
        result["wall_s"] = time.monotonic() - part_started
        report["parts"][part] = result
        print(f"[gpu-check] {part}: {result['status']}{part_summary(result)} ({result['wall_s']:.0f} s)", flush=True)
        write_report(report, args.out)
    report.update(status=overall_status(report["parts"]), wall_s=time.monotonic() - started)
    write_report(report, args.out)
    print(f"[gpu-check] {report['status']}: {args.out / 'gpu-check.md'} and gpu-check.json", flush=True)
    return 0 if report["status"] == "passed" else 1


def part_summary(result: dict) -> str:
    """A few words on a finished part for its progress line."""
    if "failing" in result:
        return f": {result['passed']} passed, {result['failed'] + result['errors']} failed, {result['skipped']} skipped"
    if "rows" in result:
        done = sum(row["status"] in ("passed", "measured") for row in result["rows"])
        return f": {done} of {len(result['rows'])} rows passed or measured"
    if "last_mean" in result:
        return f": mean loss {result['first_mean']:.4f} (first {LOSS_WINDOW} steps) -> {result['last_mean']:.4f} (last)"
    return f": {result['note']}" if "note" in result else ""


def run_part(part: str, left: Callable[[], float], done: dict[str, dict]) -> dict:
    """One part, or a row saying why it did not run or where it broke."""
    if left() < MIN_PART_S:
        return {"status": "skipped", "note": f"would overrun: {max(left(), 0):.0f} s left"}
    try:
        if part == "tests":
            return run_tests(left)
        if part == "kernels":
            return run_kernels(left)
        if part == "speed":
            return run_speed(left)
        return run_train(left, train_step_seconds(done.get("speed", {})))
    except Exception as err:  # one part's failure must not lose the others' results
        return {"status": "error", "note": _one_line(err)}


def train_step_seconds(speed: dict) -> float | None:
    """The speed part's seconds per step of the training part's configuration, if measured."""
    for row in speed.get("rows", []):
        if (row["size"], row["backbone"], row["kernel"]) == (TRAIN_PRESET, TRAIN_ARCH, default_kernel(TRAIN_ARCH)):
            return row.get("s_per_step")
    return None


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        sys.exit(measure_worker(sys.argv[2]))
    sys.exit("usage: python -m bench gpu-check (this module's own entry point only serves --measure SPEC)")
