"""`python -m bench calibrate`: how often the leaderboard's paired test rejects, by simulation.

Each simulated case draws a score matrix for A (3 runs x M tasks) and for B (3 runs, or 1 for a
fixed policy such as uniform random), sharing a per-task offset (task difficulty), and adds A's true
shift; the case counts as a rejection when the paired test (`stats.paired_test`) gives p < alpha.
With shift 0 the rejection rate is the test's false-positive rate; with a shift, its power. The
noise models (every one has the task offset ~ N(0, 1) and run noise ~ N(0, 0.3^2) per run and task):

- `normal`: nothing else;
- `seed 0.03`, `seed 0.1`: plus a seed effect ~ N(0, sd^2) per run, shared by all its tasks (a
  trained model that is better or worse everywhere; the tiny grid's per-seed IQMs spread by 0.01
  to 0.08); a single-run B is a fixed policy and has none;
- `heavy`: plus a catastrophic failure in a share of the run-task cells (score minus U(3, 15)), as
  a policy that loops on a task with a small J_opt - J_rand gap (docs/results.md).

The shift moves every cell of A, so it is the true difference of the mean and of the IQM alike.
Each case goes through every test of TESTS (metric, method) on the same draws. Every draw comes
from seeded Generators: the same arguments print the same table (docs/statistics.md shows it).
With `--state FILE` each finished setting is saved (atomically); a rerun with the same arguments
and file skips them, and prints the same table as an uninterrupted run, since every setting draws
from a stream of its own.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.errors import BenchError
from bench.io import atomic_write_json
from bench.report import stats

NOISE_MODELS = ("normal", "seed 0.03", "seed 0.1", "heavy")
TESTS = (("mean", "seed_t"), ("iqm", "seed_t"), ("iqm", "bootstrap"), ("iqm", "bootstrap_per_task"))
"""(metric, method) of each test applied to every case: the leaderboard's (seed_t) and, for the
IQM, the two percentile bootstraps it replaced (`stats.TEST_METHODS`)."""


@dataclass(frozen=True)
class Setting:
    """One simulated setting (a row of the calibration table)."""

    noise: str
    """One of NOISE_MODELS (module docstring)."""
    runs_b: int
    """Runs of B (3, or 1 for a fixed baseline policy); A always has 3."""
    shift: float
    """A's true advantage over B."""


@dataclass(frozen=True)
class Args:
    cases: int = 300
    """Simulated cases per setting."""
    reps: int = 1000
    """Bootstrap resamples per test."""
    tasks: int = 192
    """Test tasks per case (the tiny preset has 192)."""
    failure_rate: float = 0.02
    """Share of run-task cells with a catastrophic failure under the `heavy` noise model."""
    shifts: tuple[float, ...] = (0.0, 0.05, 0.1)
    """True differences A - B to simulate."""
    seed: int = 0
    """Seed of the Generators behind every draw."""


def draw_case(rng: np.random.Generator, setting: Setting, args: Args) -> tuple[np.ndarray, np.ndarray]:
    """One simulated pair (A of shape (3, M), B of shape (runs_b, M))."""
    offset = rng.normal(0.0, 1.0, args.tasks)

    def runs(count: int) -> np.ndarray:
        s = offset + rng.normal(0.0, 0.3, (count, args.tasks))
        if setting.noise.startswith("seed") and count > 1:
            s = s + rng.normal(0.0, float(setting.noise.split()[1]), (count, 1))
        if setting.noise == "heavy":
            fails = rng.random(s.shape) < args.failure_rate
            s = s - fails * rng.uniform(3.0, 15.0, s.shape)
        return s

    return runs(3) + setting.shift, runs(setting.runs_b)


def settings(args: Args) -> list[Setting]:
    return [Setting(*cell) for cell in itertools.product(NOISE_MODELS, (3, 1), args.shifts)]


def _key(test: tuple[str, str]) -> str:
    return "/".join(test)


def _finished(state: Path | None, header: dict) -> dict[int, dict[tuple[str, str], float]]:
    """The settings (by index) that `state` holds for the same arguments; {} without a file."""
    if state is None or not state.exists():
        return {}
    try:
        saved = json.loads(state.read_text())
    except (OSError, ValueError) as error:
        raise BenchError(
            f"--state {state}: not a calibration state file ({error}); accepted: one that calibrate wrote"
        ) from None
    if not isinstance(saved, dict) or saved.get("header") != header:
        raise BenchError(
            f"--state {state} was written with {saved.get('header') if isinstance(saved, dict) else saved!r}; "
            f"this run has {header}: "
            "accepted: the same arguments, or another file"
        )
    return {int(i): {tuple(k.split("/")): r for k, r in rates.items()} for i, rates in saved["settings"].items()}


def calibrate(
    args: Args, alpha: float = stats.ALPHA, progress: bool = True, state: Path | None = None
) -> dict[Setting, dict[tuple[str, str], float]]:
    """Per setting, the rejection rate (p < alpha) of each test in TESTS. Every setting draws from a
    stream of its own, and the four tests see the same cases. With `state`, finished settings are
    saved there after each one and skipped when found (module docstring)."""
    if args.cases < 1 or args.reps < 1 or args.tasks < 4:
        raise BenchError(
            f"cases={args.cases}, reps={args.reps}, tasks={args.tasks}; accepted: cases >= 1, reps >= 1, tasks >= 4"
        )
    if not 0 <= args.failure_rate < 1:
        raise BenchError(f"failure_rate={args.failure_rate}; accepted: a share in [0, 1)")
    cells = settings(args)
    header = {"args": {**asdict(args), "shifts": list(args.shifts)}, "alpha": alpha, "tests": [_key(x) for x in TESTS]}
    done = _finished(state, header)
    bar = tqdm(
        total=len(cells) * args.cases,
        initial=len(done) * args.cases,
        desc="simulated cases",
        unit="case",
        disable=not progress,
    )
    rates = {}
    for index, setting in enumerate(cells):
        if index in done:
            rates[setting] = done[index]
            continue
        rng = np.random.default_rng([args.seed, index])
        rejected = dict.fromkeys(TESTS, 0)
        for _ in range(args.cases):
            a, b = draw_case(rng, setting, args)
            for metric, method in TESTS:
                test = stats.paired_test(a, b, args.reps, rng, metric=metric, method=method)
                rejected[metric, method] += test.p_value < alpha
            bar.update()
        rates[setting] = {test: count / args.cases for test, count in rejected.items()}
        if state is not None:
            done[index] = rates[setting]
            saved = {str(i): {_key(test): r for test, r in found.items()} for i, found in sorted(done.items())}
            atomic_write_json(state, {"header": header, "settings": saved})
    bar.close()
    return rates


def table(rates: dict[Setting, dict[tuple[str, str], float]]) -> str:
    """Markdown: one row per setting, one column per test."""
    head = " | ".join(f"{metric}, {method}" for metric, method in TESTS)
    lines = [f"| noise | B's runs | true shift | {head} |", "| --- | --- | --- |" + " --- |" * len(TESTS)]
    for setting, found in rates.items():
        cells = " | ".join(f"{found[test]:.3f}" for test in TESTS)
        lines.append(f"| {setting.noise} | {setting.runs_b} | {setting.shift:g} | {cells} |")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = Args()
    parser.add_argument("--cases", type=int, default=defaults.cases, help="simulated cases per setting")
    parser.add_argument("--reps", type=int, default=defaults.reps, help="bootstrap resamples per test")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of every draw")
    parser.add_argument("--state", type=Path, help="save finished settings here; a rerun skips them (resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    simulation = Args(cases=args.cases, reps=args.reps, seed=args.seed)
    found = calibrate(simulation, progress=not args.no_progress, state=args.state)
    print(table(found))
    return 0
