"""`python -m bench run --arch gdn`: build the data if needed, train, evaluate, write the result.

One result file per seed: `<out>/<preset>/<arch>/seed<k>.json` (docs/results-schema.md).
Checkpoints go to `<run-dir>/<preset>/<arch>/seed<k>/checkpoint.pt`; `--resume` continues there.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import torch

from architectures import REGISTRY, count_parameters
from bench import distributed
from bench.anymdp.task import Task
from bench.check_arch import check_backbone, failure_sentence
from bench.data import DataInfo, ensure_data
from bench.data.behavior import N_TAGS, PROMPT_ORACLE, TAG_UNKNOWN
from bench.data.loader import ShardedSequences, batch_loader
from bench.data.split import test_tasks
from bench.errors import BenchError
from bench.evaluate import EVAL_ROLLOUTS, grouped_eval, interactive_eval, offline_eval
from bench.model import ICRLModel, build_model, check_overrides
from bench.options import RunOptions
from bench.presets import DEFAULT_PRESET, PRESETS, Preset, get_preset
from bench.provenance import backbone_source
from bench.report import results
from bench.report.leaderboard import write_leaderboard
from bench.rollout import shard_agent
from bench.suites import OOD_INSTANCES, Suite, load_suite
from bench.train import TrainResult, available_cores, train
from bench.train_log import check_wandb

PACKAGES = ("torch", "numpy", "scipy", "tqdm", "gymnasium", "xenoverse", "fla-core", "triton")
MAX_LOSS_POINTS = 200
T = TypeVar("T")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, help=f"backbone: {', '.join(REGISTRY)} or pkg.module:Class")
    parser.add_argument(
        "--preset", default=DEFAULT_PRESET, help=f"one of: {', '.join(PRESETS)} (default {DEFAULT_PRESET})"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    group.add_argument("--seeds", type=int, nargs="+", help="several seeds, one result file each")
    restart = parser.add_mutually_exclusive_group()
    restart.add_argument("--resume", action="store_true", help="continue from the run's checkpoint if there is one")
    restart.add_argument("--restart", action="store_true", help="start over, replacing the run's checkpoint")
    parser.add_argument(
        "--arch-kwargs",
        type=parse_arch_kwargs,
        default=None,
        help="backbone constructor arguments over the preset's, as JSON, e.g. '{\"n_heads\": 8}' "
        "(the result is a variant: <arch>_kw<hash>)",
    )
    parser.add_argument("--out", default="results", help="results folder (default results)")
    parser.add_argument("--run-dir", default="runs", help="checkpoint folder (default runs)")
    parser.add_argument("--data-root", default=None, help="data folder (default: bench.data's own)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for training (default: all available cores)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--wandb", action="store_true", help="also log training to Weights & Biases (project anymdp-bench)"
    )


def main(args: argparse.Namespace) -> int:
    preset = get_preset(args.preset)
    seeds = args.seeds if args.seeds is not None else [0 if args.seed is None else args.seed]
    check_device(args.device)
    if args.wandb:
        check_wandb()
    out = Path(args.out)
    with distributed.process_group(args.device) as context:  # joins torchrun's group when WORLD_SIZE > 1
        options = RunOptions(
            out=out,
            run_dir=Path(args.run_dir),
            data_root=args.data_root,
            resume=args.resume,
            restart=args.restart,
            device=context.device,
            threads=context.threads if args.threads is None else args.threads,
            progress=not args.no_progress,
            wandb=args.wandb,
        )
        try:
            run(args.arch, preset, seeds, options, arch_kwargs=args.arch_kwargs)
        except KeyboardInterrupt:
            if context.rank == 0:
                again = [a for a in sys.argv[1:] if a != "--restart"] + ([] if args.resume else ["--resume"])
                print(f"resume with: python -m bench {shlex.join(again)}", file=sys.stderr, flush=True)
            raise
        if context.rank == 0:
            regenerate_leaderboard(out)
    return 0


def parse_arch_kwargs(text: str) -> dict[str, Any]:
    """The JSON object of --arch-kwargs (argparse reports a ValueError as a one-line usage error)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg}); e.g. '{{\"n_heads\": 8}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"n_heads\": 8}}', got {text!r}")
    return value


def check_device(device: str | None) -> None:
    """A BenchError unless `device` is None, cpu, or cuda[:N] with CUDA available."""
    if device is None:
        return
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise BenchError(f"--device {device!r} is not a torch device; accepted: cpu, cuda, cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        build = torch.__version__
        raise BenchError(
            f"--device {device}: CUDA is not available here (torch {build}, no visible GPU); use --device cpu"
        )
    if kind not in ("cpu", "cuda"):
        raise BenchError(f"--device {device!r}: accepted: cpu, cuda, cuda:N")


def run(
    arch: str,
    preset: Preset,
    seeds: list[int],
    options: RunOptions,
    arch_kwargs: dict[str, Any] | None = None,
) -> list[Path]:
    """Check the backbone, ensure data, then train, evaluate and write one result per seed; returns
    the result paths. `arch_kwargs` update the backbone's constructor arguments (a variant);"""
    if not seeds or any(seed < 0 for seed in seeds):
        raise BenchError(f"seeds must be non-negative integers; got {seeds}")
    check_overrides(arch, arch_kwargs or {})
    # the whole run uses the training's thread count: a first CPU kernel call under another count
    # was seen to change later float results (rwkv7's micro-run weights), so none runs under another
    torch.set_num_threads(options.threads or available_cores())
    check_before_training(arch, preset, arch_kwargs or {})
    options = dataclasses.replace(options, device=options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    start = time.perf_counter()
    print(f"[data] preset {preset.name}: ensuring training data", flush=True)
    distributed.check_batch_divides(preset.recipe.batch_size)
    info = ensure_data(preset, options.data_root, options.progress)
    data_s = time.perf_counter() - start
    print(
        f"[data] {info.n_sequences} train / {info.n_valid} valid sequences of {info.seq_len} steps "
        f"at {info.root} ({data_s:.1f} s)",
        flush=True,
    )
    tasks = test_tasks(preset)  # about 3 s for tiny in one process
    ood = load_suite("ood", preset)
    paths = []
    for seed in seeds:
        job = Job(arch, arch_kwargs or {}, seed)
        path = run_one(job, preset, info, tasks, ood, options, data_s if seed == seeds[0] else 0.0)
        print(f"[result] wrote {path}" if distributed.is_main() else f"[result] rank 0 wrote {path}", flush=True)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Job:
    """What one seed's run computes, beyond the preset."""

    arch: str
    """Registered name or `pkg.module:Class`."""
    arch_kwargs: dict[str, Any]
    """Constructor arguments over the preset's (empty: the preset's own backbone)."""
    seed: int
    """Seed of weights, data order, masking and rollouts."""

    @property
    def name(self) -> str:
        """The result's `arch`: the folder-safe architecture name, with `_kw<hash>` for a variant."""
        return results.variant_name(self.arch, self.arch_kwargs)


def run_one(
    job: Job, preset: Preset, info: DataInfo, tasks: list[Task], ood: Suite, options: RunOptions, data_s: float
) -> Path:
    """Train and evaluate one seed (the test tasks, then the OOD suite); returns the result path."""
    started = time.perf_counter()
    code_at_start = git_state()
    model, arch_kwargs = build_model(
        job.arch, preset, seed=job.seed, n_prompts=N_TAGS, n_tags=N_TAGS, overrides=job.arch_kwargs
    )
    trained = train_seed(model, job, preset, info, options)
    offline, offline_s = timed(lambda: evaluate_offline(model, info, preset, options.device))
    print(
        f"[rollout] {len(tasks)} test tasks x {preset.recipe.eval_steps} steps x {EVAL_ROLLOUTS} rollouts", flush=True
    )
    agent = shard_agent(model, preset.data.na)
    interactive, rollout_s = timed(
        lambda: interactive_eval(agent, tasks, preset, PROMPT_ORACLE, TAG_UNKNOWN, options.device)
    )
    print(f"[rollout] {rollout_s:.1f} s", flush=True)
    print(f"[ood] {len(set(ood.groups))} Table 1 tasks x {OOD_INSTANCES} instances", flush=True)
    ood_record, ood_s = timed(lambda: grouped_eval(agent, ood, preset, PROMPT_ORACLE, TAG_UNKNOWN, options.device))
    print(
        f"[ood] {ood_s:.1f} s; not applicable at {preset.name}: {', '.join(ood.not_applicable) or 'none'}", flush=True
    )
    wall = {
        "data": data_s,
        "train": trained.wall_s,
        "offline_eval": offline_s,
        "rollout": rollout_s,
        "ood_rollout": ood_s,
        "total": data_s + time.perf_counter() - started,
    }
    code = code_provenance(code_at_start, git_state())
    threads = options.threads or available_cores()
    doc = {
        "schema_version": results.SCHEMA_VERSION,
        "kind": results.KIND,
        "preset": preset.name,
        "arch": job.name,
        "seed": job.seed,
        "manifest": manifest(model, arch_kwargs, preset, info, options.device, wall, trained, threads, code),
        "training": {
            "steps": trained.steps,
            "tokens": trained.tokens,
            "final_loss": trained.final_loss,
            "loss_curve": thin(trained.loss_curve, MAX_LOSS_POINTS),
        },
        "offline": offline,
        "interactive": interactive,
        "ood": ood_record,
    }
    distributed.barrier("the end of evaluation")  # no result unless every rank finished
    if distributed.is_main():
        return results.write_result(doc, options.out)
    return results.result_path(options.out, preset.name, job.name, job.seed)


def check_before_training(arch: str, preset: Preset, arch_kwargs: dict[str, Any]) -> None:
    """The fast conformance checks of `check-arch`, before any data or training: a BenchError with
    the first failure's sentence (unknown names and missing sizes fail here too)."""
    started = time.perf_counter()
    checks = check_backbone(arch, preset.name, overrides=arch_kwargs, quick=True)
    sentence = failure_sentence(checks)
    if sentence is not None:
        raise BenchError(
            f"{arch} fails the backbone contract: {sentence} (full report: python -m bench check-arch {arch} "
            f"--preset {preset.name})"
        )
    print(
        f"[check] {arch}: {len(checks)} conformance checks passed ({time.perf_counter() - started:.1f} s)", flush=True
    )


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """fn() and the seconds it took."""
    start = time.perf_counter()
    return fn(), time.perf_counter() - start


def train_seed(model: ICRLModel, job: Job, preset: Preset, info: DataInfo, options: RunOptions) -> TrainResult:
    """Train one seed's model on the preset's training split (checkpoints under options.run_dir)."""
    recipe = preset.recipe
    train_set = ShardedSequences(info.root, "train")

    def batches(epoch: int, rank: int, world_size: int):
        return batch_loader(train_set, recipe.batch_size, job.seed, epoch, rank, world_size)

    print(
        f"[train] {job.name} seed {job.seed}: {count_parameters(model.backbone)} backbone parameters, "
        f"{recipe.train_steps} steps of {recipe.batch_size} x {info.seq_len} steps "
        f"({model.tokens_per_step} tokens each), device {options.device}",
        flush=True,
    )
    checkpoint_dir = options.checkpoint_dir(preset.name, job.name, job.seed)
    meta = {
        "preset": preset.name,
        "preset_digest": preset.digest(),
        "arch": job.name,
        "arch_kwargs": job.arch_kwargs,
        "seed": job.seed,
    }
    trained = train(model, recipe, batches, checkpoint_dir, options, seed=job.seed, meta=meta)
    print(
        f"[train] done: loss {trained.final_loss:.4f}, {trained.tokens_per_s:.0f} tokens/s, {trained.wall_s:.1f} s",
        flush=True,
    )
    return trained


def evaluate_offline(model: ICRLModel, info: DataInfo, preset: Preset, device: str) -> dict:
    """Offline losses on the validation split (batches of up to 32 sequences that divide it)."""
    valid_set = ShardedSequences(info.root, "valid")
    valid_batch = max(b for b in range(1, min(32, len(valid_set)) + 1) if len(valid_set) % b == 0)
    offline = offline_eval(model, batch_loader(valid_set, valid_batch, seed=0), preset.recipe.segment_len, device)
    print(f"[offline] action accuracy by position {[round(a, 3) for a in offline['action_acc']]}", flush=True)
    return offline


def thin(curve: list[tuple[int, float]], max_points: int) -> list[list[float]]:
    """At most about `max_points` evenly spaced entries of a curve, always keeping the last."""
    stride = max(1, math.ceil(len(curve) / max_points))
    kept = curve[::stride]
    if curve and kept[-1] != curve[-1]:
        kept.append(curve[-1])
    return [[step, loss] for step, loss in kept]


OUTPUT_PATHS = (":(exclude)results", ":(exclude,glob)**/*.md")
"""Benchmark outputs and documentation (leaderboard.md, docs): changing them, as every run does with
the leaderboard, does not make the code dirty."""


def git_state(here: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding `here` (default: this file; dirty: tracked files other
    than the benchmark's outputs and Markdown changed), or (None, None) outside git."""
    here = Path(__file__).resolve().parent if here is None else here
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *OUTPUT_PATHS],
            cwd=top,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, bool(status.strip())


def code_provenance(
    at_start: tuple[str | None, bool | None], at_end: tuple[str | None, bool | None]
) -> tuple[str | None, bool | None]:
    """(commit, dirty) of a run from `git_state()` at its start and end: the commit checked out when
    it started (the code it imported), dirty if the code was dirty then or at the end, or if another
    commit was checked out meanwhile (modules imported late would come from it)."""
    (commit, dirty), (end_commit, end_dirty) = at_start, at_end
    if commit is None:
        return None, None
    return commit, bool(dirty or end_dirty or end_commit != commit)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_identity() -> dict[str, str]:
    """What, besides the seed, decides a CPU run's bits: torch's CPU capability and the processor's
    vendor, family and model name (from /proc/cpuinfo; `platform.processor()` elsewhere). An AVX-512
    Intel Xeon and an AVX-512 AMD EPYC train different weights from the same seed
    (tests/micro_digest.py)."""
    info: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "vendor": info.get("vendor_id") or platform.machine() or "unknown",
        "family": info.get("cpu family", "?"),
        "model": info.get("model name") or platform.processor() or "unknown",
    }


def manifest(
    model: ICRLModel,
    arch_kwargs: dict,
    preset: Preset,
    info: DataInfo,
    device: str,
    wall: dict,
    trained: TrainResult,
    threads: int,
    code: tuple[str | None, bool | None],
) -> dict:
    """The `manifest` record of a result file; `code`: (commit, dirty) from `code_provenance`."""
    commit, dirty = code
    cls = type(model.backbone)
    return {
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": list(sys.argv),
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_identity(),
        "device": torch.cuda.get_device_name(torch.device(device)) if torch.device(device).type == "cuda" else "cpu",
        "torch_threads": threads,
        "dataset_fingerprint": info.fingerprint,
        "preset_digest": preset.digest(),
        "arch_class": f"{cls.__module__}:{cls.__qualname__}",
        "backbone_source": backbone_source(cls),
        "arch_kwargs": arch_kwargs,
        "param_count": {"backbone": count_parameters(model.backbone), "total": count_parameters(model)},
        "state_size": int(model.backbone.state_size()),
        "wall_time_s": wall,
        "train_tokens_per_s": trained.tokens_per_s,
        "peak_memory_bytes": trained.peak_memory_bytes,
    }


def regenerate_leaderboard(out: str | Path) -> None:
    """Rewrite the leaderboard of the results folder `out`: the tracked `leaderboard.md` for the
    repository's own `results/`, else `<out>/leaderboard.md` (a private folder never touches the
    tracked one; compare with it by `python -m bench leaderboard --results results --results <out> --stdout`)."""
    repo = Path(__file__).resolve().parents[1]
    target = repo / "leaderboard.md" if Path(out).resolve() == repo / "results" else Path(out) / "leaderboard.md"
    path, accepted, refused = write_leaderboard(out, target)
    n_accepted = sum(len(docs) for docs in accepted.values())
    print(f"[leaderboard] regenerated {path}: {n_accepted} result files, {len(refused)} refused", flush=True)
    for file, reason in refused:
        print(f"[leaderboard]   refused {file}: {reason}", flush=True)
