"""`python -m bench eval`: roll out a trained checkpoint on a suite of tasks, without retraining.

    python -m bench eval --arch gdn --suite valid            # tune on valid, never on test
    python -m bench eval --result results/tiny/gdn/seed0.json --suite fresh --nonce 7

The checkpoint is the one `bench run` left at `<run-dir>/<preset>/<arch>/seed<k>/checkpoint.pt`.
The model and the oracle, random and TQL-UCB baselines are rolled out on the same tasks (suites in
`bench.suites`). The record goes to `<run-dir>/<preset>/<arch>/seed<k>/eval/<suite>.json`
(or `--out`); `fresh` also rolls out the test suite and prints the test - fresh difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from architectures import REGISTRY
from bench import metrics
from bench.data.behavior import N_TAGS, PROMPT_ORACLE, TAG_UNKNOWN
from bench.errors import BenchError
from bench.evaluate import EVAL_ROLLOUTS, grouped_eval, interactive_eval
from bench.io import atomic_write_json
from bench.model import ICRLModel, build_model
from bench.options import RunOptions
from bench.presets import DEFAULT_PRESET, PRESETS, Preset, get_preset
from bench.report import results
from bench.run import check_device, git_state, parse_arch_kwargs
from bench.suites import SUITES, Suite, load_suite
from bench.train import CHECKPOINT_NAME

KIND = "anymdp-bench-eval"
SCHEMA_VERSION = 1
COMPARISON_SAMPLES = 4000
"""Bootstrap resamples of the test - fresh difference interval."""


@dataclass(frozen=True)
class Target:
    """The trained run to evaluate."""

    arch: str
    """What builds the backbone: a registered name or `pkg.module:Class`."""
    arch_kwargs: dict[str, Any]
    """Constructor arguments over the size's."""
    name: str
    """The run's folder name (the result's `arch`: a variant name for overrides)."""
    preset: Preset
    seed: int


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", help=f"backbone: {', '.join(REGISTRY)} or pkg.module:Class")
    source.add_argument("--result", help="a result file: evaluate the checkpoint of the run that wrote it")
    parser.add_argument("--preset", default=None, help=f"with --arch: {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    parser.add_argument("--seed", type=int, default=None, help="with --arch: the run's seed (default 0)")
    parser.add_argument("--arch-kwargs", type=parse_arch_kwargs, default=None, help="with --arch: as in bench run")
    parser.add_argument("--suite", required=True, choices=SUITES, help="tasks to roll out on")
    parser.add_argument("--nonce", type=int, default=None, help="with --suite fresh: which fresh tasks (0 to 2**32-1)")
    parser.add_argument("--steps", type=int, default=None, help="rollout steps per task (default: the preset's)")
    parser.add_argument(
        "--temperature",
        type=float,
        nargs=3,
        metavar=("START", "END", "STEPS"),
        default=None,
        help="sampling temperature decaying linearly from START to END over STEPS rollout steps, then END "
        "(default: the preset's); choose it on --suite valid, never on test",
    )
    parser.add_argument(
        "--rollouts",
        type=int,
        default=EVAL_ROLLOUTS,
        help=f"independent rollouts per task (default {EVAL_ROLLOUTS}); the record reports how the final "
        "score's standard deviation falls with the rollouts averaged",
    )
    parser.add_argument("--run-dir", default="runs", help="checkpoint folder (default runs)")
    parser.add_argument("--out", default=None, help="eval record path (default: beside the checkpoint, eval/)")
    parser.add_argument("--partial", action="store_true", help="accept the checkpoint of an unfinished run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing eval record")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def main(args: argparse.Namespace) -> int:
    check_device(args.device)
    if args.result is not None:
        if args.preset is not None or args.seed is not None or args.arch_kwargs is not None:
            raise BenchError("--result names the preset, seed and backbone; drop --preset, --seed and --arch-kwargs")
        target = target_of_result(Path(args.result))
    else:
        preset = get_preset(args.preset or DEFAULT_PRESET)
        seed = 0 if args.seed is None else args.seed
        if seed < 0:
            raise BenchError(f"--seed {seed}: accepted: a non-negative integer")
        kwargs = args.arch_kwargs or {}
        target = Target(args.arch, kwargs, results.variant_name(args.arch, kwargs), preset, seed)
    if args.rollouts < 1:
        raise BenchError(f"--rollouts {args.rollouts}: accepted: a positive integer")
    schedule = rollout_schedule(target.preset, args.temperature)
    if args.steps is not None and args.steps < 4:
        raise BenchError(f"--steps {args.steps}: accepted: an integer >= 4 (scores compare quarters of the rollout)")
    suite = load_suite(args.suite, target.preset, args.nonce)  # bad --nonce fails before any loading
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint = RunOptions(run_dir=Path(args.run_dir)).checkpoint_dir(target.preset.name, target.name, target.seed)
    out = Path(args.out) if args.out else checkpoint / "eval" / f"{suite.name}.json"
    if out.exists() and not args.overwrite:
        raise BenchError(f"{out} exists; pass --overwrite to replace it, or --out to write elsewhere")
    model, step = load_checkpoint(target, checkpoint / CHECKPOINT_NAME, args.partial, device)
    if suite.name == "ood":
        print(f"[eval] {target.name} seed {target.seed}: suite ood, {len(set(suite.groups))} tasks", flush=True)
        record = grouped_eval(
            model, suite, schedule, PROMPT_ORACLE, TAG_UNKNOWN, device, args.steps, rollouts=args.rollouts
        )
        print(ood_table(record), flush=True)
    else:
        record = evaluate_suite(model, target, suite, args.steps, device, args.rollouts, schedule)
        print(group_table(record), flush=True)
        print(noise_table(record), flush=True)
    comparison = None
    if args.suite == "fresh":
        test = evaluate_suite(
            model, target, load_suite("test", target.preset), args.steps, device, args.rollouts, schedule
        )
        comparison = compare(test, record)
        print(comparison_line(comparison), flush=True)
    commit, dirty = git_state()
    atomic_write_json(
        out,
        {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "preset": target.preset.name,
            "preset_digest": target.preset.digest(),
            "arch": target.name,
            "seed": target.seed,
            "suite": suite.name,
            "nonce": args.nonce,
            "temperature": list(schedule.recipe.temperature),
            "checkpoint": {"path": str(checkpoint / CHECKPOINT_NAME), "step": step},
            "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": list(sys.argv),
            "git_commit": commit,
            "git_dirty": dirty,
            "interactive": record,
            "test_minus_fresh": comparison,
        },
    )
    print(f"[eval] wrote {out}", flush=True)
    return 0


def target_of_result(path: Path) -> Target:
    """The run behind a result file: its preset, seed, run name and the backbone it built."""
    doc, reasons = results.load_result(path)
    if doc is None or reasons:
        raise BenchError(f"{path} is not a valid result file: {reasons[0] if reasons else 'unreadable'}")
    preset = get_preset(doc["preset"])
    if doc["manifest"]["preset_digest"] != preset.digest():
        raise BenchError(
            f"{path} was made with another definition of preset {preset.name!r}; its run cannot be rebuilt"
        )
    arch_class = doc["manifest"]["arch_class"]
    shipped = {target: name for name, target in REGISTRY.items()}
    return Target(shipped.get(arch_class, arch_class), doc["manifest"]["arch_kwargs"], doc["arch"], preset, doc["seed"])


def load_checkpoint(target: Target, path: Path, partial: bool, device: str) -> tuple[ICRLModel, int]:
    """The model of `target` with the checkpoint's weights, and the checkpoint's step."""
    preset = target.preset
    if not path.exists():
        raise BenchError(
            f"no checkpoint at {path}: train it first (python -m bench run --arch {target.arch} --preset {preset.name} "
            f"--seed {target.seed}), or point --run-dir at the folder that holds it"
        )
    saved = torch.load(path, map_location="cpu", weights_only=False)
    meta = saved.get("meta") or {}  # checkpoints written before runs recorded it have none
    expected = {"preset_digest": preset.digest(), "arch": target.name, "seed": target.seed}
    for key, value in expected.items():
        if key in meta and meta[key] != value:
            raise BenchError(
                f"{path} was trained as {meta.get('preset')!r} / {meta.get('arch')!r} / seed {meta.get('seed')}, "
                f"not {preset.name!r} / {target.name!r} / seed {target.seed} ({key} differs)"
            )
    step, total = int(saved.get("step", -1)), preset.recipe.train_steps
    if step < total and not partial:
        raise BenchError(
            f"{path} is at step {step} of {total}: the run has not finished (resume it with bench run --resume, "
            "or pass --partial to evaluate it as it is)"
        )
    model, _ = build_model(
        target.arch, preset, seed=target.seed, n_prompts=N_TAGS, n_tags=N_TAGS, overrides=target.arch_kwargs
    )
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise BenchError(f"{path} does not fit the model of {target.name} at {preset.name}: {first}") from None
    return model.to(device), step


def rollout_schedule(preset: Preset, temperature: list[float] | None) -> Preset:
    """`preset` with the sampling temperature schedule of `--temperature` (START END STEPS), if given."""
    if temperature is None:
        return preset
    start, end, steps = temperature
    if not (start > 0 and end > 0 and steps >= 0 and float(steps).is_integer()):
        raise BenchError(
            f"--temperature {start:g} {end:g} {steps:g}: accepted: START > 0, END > 0, STEPS a non-negative integer"
        )
    recipe = dataclasses.replace(preset.recipe, temperature=(start, end, int(steps)))
    return dataclasses.replace(preset, recipe=recipe)


def evaluate_suite(
    model: ICRLModel,
    target: Target,
    suite: Suite,
    steps: int | None,
    device: str,
    rollouts: int,
    schedule: Preset | None = None,
) -> dict:
    """The `interactive` record of the model and the baselines on the suite's tasks; `schedule`:
    the preset whose temperature schedule the rollouts follow (default the target's)."""
    steps = target.preset.recipe.eval_steps if steps is None else steps
    print(
        f"[eval] {target.name} seed {target.seed}: suite {suite.name}, {len(suite.tasks)} tasks x {steps} steps "
        f"x {rollouts} rollouts"
    )
    return interactive_eval(
        model,
        suite.tasks,
        schedule or target.preset,
        PROMPT_ORACLE,
        TAG_UNKNOWN,
        device,
        steps,
        groups=suite.groups,
        rollouts=rollouts,
    )


def ood_table(record: dict) -> str:
    """Final score of each agent on each OOD task, and the tasks left out."""
    rows = []
    for name, part in record["by_task"].items():
        cells = "".join(_cell(part["agents"][a]["overall"]["final"]) for a in part["agents"])
        rows.append(f"{name:26s}{cells}")
    agents = next(iter(record["by_task"].values()))["agents"] if record["by_task"] else {}
    header = f"{'task':26s}" + "".join(f"{agent:>10s}" for agent in agents)
    skipped = [f"  {name}: not applicable ({why})" for name, why in record["not_applicable"].items()]
    return "\n".join([f"{SCORE_TITLE}", header, *rows, *skipped])


SCORE_TITLE = "final score: anchored episodes of the last quarter, normalised (0 = uniform random, 1 = oracle)"


def _cell(value: float | None) -> str:
    return f"{'—':>10s}" if value is None else f"{value:10.3f}"


def final_scores(record: dict, agent: str = "model") -> np.ndarray:
    """Per-task final score of one agent (each the mean over the rollouts)."""
    curves, _ = metrics.record_arrays(record["agents"][agent]["tasks"])
    steps = record["eval_steps"]
    return metrics.task_scores(curves, metrics.anchor_steps(steps), steps)["final"]


def compare(test: dict, fresh: dict) -> dict:
    """The model's final score on test and on fresh tasks, and test - fresh with a bootstrap 95 %
    interval (tasks resampled within each suite)."""
    a, b = final_scores(test), final_scores(fresh)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    rng = np.random.default_rng([metrics.BOOTSTRAP_SEED, COMPARISON_SAMPLES])
    diffs = a[rng.integers(len(a), size=(COMPARISON_SAMPLES, len(a)))].mean(1) - b[
        rng.integers(len(b), size=(COMPARISON_SAMPLES, len(b)))
    ].mean(1)
    lo, hi = np.quantile(diffs, [(1 - metrics.CI_LEVEL) / 2, (1 + metrics.CI_LEVEL) / 2])
    return {
        "metric": "model final score per task (task mean, not group-balanced)",
        "test": float(a.mean()),
        "fresh": float(b.mean()),
        "difference": float(a.mean() - b.mean()),
        "ci": [float(lo), float(hi)],
        "bootstrap_samples": COMPARISON_SAMPLES,
    }


def comparison_line(comparison: dict) -> str:
    lo, hi = comparison["ci"]
    return (
        f"[eval] model final score: test {comparison['test']:.3f}, fresh {comparison['fresh']:.3f}, "
        f"test - fresh {comparison['difference']:+.3f} (95 % CI [{lo:+.3f}, {hi:+.3f}])"
    )


def group_table(record: dict) -> str:
    """Final score of each agent, overall and per group, as an aligned text table."""
    agents = list(record["agents"])
    names = ["overall", *record["agents"]["model"]["groups"]]
    lines = [f"{'group':14s}" + "".join(f"{agent:>10s}" for agent in agents)]
    for name in names:
        cells = []
        for agent in agents:
            entry = record["agents"][agent]
            cells.append(_cell((entry["overall"] if name == "overall" else entry["groups"][name])["final"]))
        lines.append(f"{name:14s}" + "".join(cells))
    return SCORE_TITLE + "\n" + "\n".join(lines)


def noise_table(record: dict) -> str:
    """Standard deviation of the overall final score over disjoint sets of m rollouts, per agent."""
    noise = record["rollout_noise"]
    sizes = [m for m, _ in noise["model"]]
    if not sizes:
        return "rollout noise: needs at least 2 rollouts (--rollouts)"
    lines = [f"{'rollouts m':14s}" + "".join(f"{agent:>10s}" for agent in noise)]
    for i, m in enumerate(sizes):
        lines.append(f"{m:<14d}" + "".join(f"{noise[a][i][1]:10.4f}" for a in noise))
    return "sd of the overall final score over disjoint sets of m rollouts\n" + "\n".join(lines)
