"""`python -m bench perf anymdp`: speed of task sampling, environments and exact solvers.

Prints two tables: task sampling (ours vs the official xenoverse sampler, side by side in one run,
via `bench.anymdp.fidelity.time_sampler`), then env stepping and solver times. Throughputs are
the best of `--repeats` runs (the machine may be shared); solver times the best of `--repeats` too.
Each row also gives the process CPU time of its best run: on a busy machine it is closer to what
the code costs than wall time (all of it runs in one thread: no BLAS, docs/anymdp.md).
"""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np

from bench.anymdp.batched import BatchedEnv
from bench.anymdp.sampler import sample_task
from bench.anymdp.solvers import (
    LABEL_GAMMA,
    TaskArrays,
    backward_induction,
    oracle_returns,
    random_returns,
    value_iteration,
)
from bench.errors import BenchError
from bench.perf.common import best_time, official_single, ours_single, rate_row, time_single_env_steps
from bench.report.table import format_table


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer tasks and steps (about 1 minute)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (best is reported)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--seed", type=int, default=0, help="seed of tasks and actions")


def sampler_rows(quick: bool, seed: int) -> list[dict[str, object]]:
    try:
        from bench.anymdp.fidelity import time_sampler
    except ImportError as err:
        print(f"(sampler timing skipped: bench.anymdp.fidelity.time_sampler not importable: {err})")
        return []
    official = importlib.util.find_spec("xenoverse") is not None
    if not official:
        print("(xenoverse not installed: timing our sampler only)")
    return time_sampler([16, 32] if quick else [16, 32, 64], 3 if quick else 8, official=official, seed=seed)


def time_batched_steps(tasks, steps: int, repeats: int, seed: int) -> tuple[float, float]:
    env = BatchedEnv(tasks, seed=seed)
    actions = np.random.default_rng(seed).integers(0, env.na, (steps, env.batch))
    env.reset()

    def run() -> None:
        for row in actions:
            env.step(row)

    return best_time(run, repeats)


def main(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise BenchError(f"--repeats must be >= 1; got {args.repeats}")
    quick, repeats, seed = args.quick, args.repeats, args.seed
    rows: list[dict[str, object]] = []

    def add(benchmark: str, setting: str, seconds: tuple[float, float], count: int, unit: str) -> None:
        rows.append(rate_row(benchmark, setting, seconds, count, unit))
        wall = seconds[0]
        print(f"  {benchmark}: {setting}: {wall:.4g} s", flush=True)

    sampled = sampler_rows(quick, seed)

    tasks64 = [sample_task(64, seed=seed + i) for i in range(256)]
    steps = 500 if quick else 2000
    seconds = time_batched_steps(tasks64, steps, repeats, seed)
    add("BatchedEnv.step", f"B=256 tasks, ns=64, {steps} steps", seconds, steps * 256, "steps/s (all tasks)")
    single_steps = 2000 if quick else 10_000
    for name, make in (("AnyMDPEnv.step (ours)", ours_single), ("xenoverse AnyMDPEnv.step", official_single)):
        if name.startswith("xenoverse") and importlib.util.find_spec("xenoverse") is None:
            continue
        seconds = time_single_env_steps(lambda: make(tasks64[0]), single_steps, repeats)
        add(name, f"1 task, ns=64, {single_steps} steps", seconds, single_steps, "steps/s")

    n_distinct, n_solve = (4, 64) if quick else (8, 256)
    distinct = [sample_task(128, seed=seed + i) for i in range(n_distinct)]
    arrays = TaskArrays.stack([distinct[i % n_distinct] for i in range(n_solve)])
    setting = f"{n_solve} tasks ({n_distinct} sampled, repeated), ns=128, H<={arrays.horizon.max()}"
    slow_repeats = 1 if quick else min(repeats, 2)
    add(
        "value_iteration (gamma 0.994)",
        setting,
        best_time(lambda: value_iteration(arrays, LABEL_GAMMA), repeats),
        n_solve,
        "tasks/s",
    )
    add(
        "oracle_returns (backward induction)",
        setting,
        best_time(lambda: oracle_returns(arrays), slow_repeats),
        n_solve,
        "tasks/s",
    )
    add(
        "random_returns (forward propagation)",
        setting,
        best_time(lambda: random_returns(arrays), slow_repeats),
        n_solve,
        "tasks/s",
    )
    small = TaskArrays.stack(distinct[:4] * 8)
    add(
        "backward_induction (full Q)",
        f"32 tasks, ns=128, H<={small.horizon.max()}",
        best_time(lambda: backward_induction(small), slow_repeats),
        32,
        "tasks/s",
    )

    print()
    if sampled:
        print("Task sampling (wall time of one task):")
        print(format_table(sampled, markdown=args.markdown))
        print()
    print(format_table(rows, markdown=args.markdown))
    return 0
