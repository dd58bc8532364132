"""`python -m bench perf data`: speed of DPD synthesis and of the training loader.

Rows: synthesis at ns = 64 with the full behavior mixture (labels included, task sampling not),
in one process and in `--workers` processes; synthesis at the tiny preset's ns; one tiny shard end
to end (task sampling, labels, synthesis, writing); the loader reading a built split from the page
cache; and, beside them, the official xenoverse env's single-task stepping rate when installed.
Each rate is the best of `--repeats` runs; CPU seconds are given too (the machine may be shared).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import multiprocessing
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.anymdp.sampler import sample_task
from bench.anymdp.solvers import TaskArrays, label_policy
from bench.data import shards
from bench.data import split as sp
from bench.data.loader import ShardedSequences, batch_loader
from bench.data.synth import synthesize
from bench.errors import BenchError
from bench.perf.common import best_time, official_single, rate_row, time_single_env_steps
from bench.presets import PRESETS
from bench.report.table import format_table


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer tasks and steps")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (best is reported)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the parallel synthesis row")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")


def _synthesize_timed(job: tuple[int, int, int]) -> tuple[float, float]:
    """Sample `n_tasks` ns=64 tasks from `first_seed` and their labels, then synthesize: (start, end) wall clock."""
    first_seed, n_tasks, seq_len = job
    tasks = [sample_task(64, seed=first_seed + i) for i in range(n_tasks)]
    labels = label_policy(TaskArrays.stack(tasks))
    start = time.time()
    synthesize(tasks, seq_len, labels=labels)
    return start, time.time()


def main(args: argparse.Namespace) -> int:
    if args.repeats < 1 or args.workers < 1:
        raise BenchError(f"--repeats and --workers must be >= 1; got {args.repeats}, {args.workers}")
    rows: list[dict[str, object]] = []

    def add(benchmark: str, setting: str, seconds: tuple[float, float | None], count: int, unit: str) -> None:
        rows.append(rate_row(benchmark, setting, seconds, count, unit))
        wall = seconds[0]
        print(f"  {benchmark}: {setting}: {count / wall:.4g} {unit}", flush=True)

    seq_len = 512 if args.quick else 1024
    n_tasks = 204  # one sub-batch at ns = 64 (synth.sub_batches)
    tasks64 = [sample_task(64, seed=i) for i in range(n_tasks)]
    arrays = TaskArrays.stack(tasks64)
    add(
        "label_policy (value iteration, gamma 0.994)",
        f"{n_tasks} tasks, ns=64",
        best_time(lambda: label_policy(arrays), args.repeats),
        n_tasks,
        "tasks/s",
    )
    labels = label_policy(arrays)
    setting = f"{n_tasks} tasks x {seq_len} steps, ns=64, labels given"
    add(
        "synthesize (1 process)",
        setting,
        best_time(lambda: synthesize(tasks64, seq_len, labels=labels), args.repeats),
        n_tasks * seq_len,
        "steps/s",
    )
    jobs = [(w * n_tasks, n_tasks, seq_len) for w in range(args.workers)]
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        spans = min(
            (list(pool.map(_synthesize_timed, jobs)) for _ in range(args.repeats)),
            key=lambda runs: max(end for _, end in runs) - min(start for start, _ in runs),
        )
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    add(
        f"synthesize ({args.workers} processes at once)",
        f"{args.workers} x {setting}",
        (wall, None),
        args.workers * n_tasks * seq_len,
        "steps/s",
    )

    tiny = PRESETS["tiny"]
    tiny_tasks = sp.sample_tasks(sp.split_task_specs(tiny, "train", range(tiny.data.shard_size)))
    add(
        "synthesize (1 process)",
        f"tiny shard 0: {len(tiny_tasks)} tasks x {seq_len} steps, ns 8-16, labels incl.",
        best_time(lambda: synthesize(tiny_tasks, seq_len), args.repeats),
        len(tiny_tasks) * seq_len,
        "steps/s",
    )

    with tempfile.TemporaryDirectory() as folder:
        n_seq = 128 if args.quick else 512
        data = dataclasses.replace(tiny.data, train_tasks=n_seq, valid_tasks=1, seq_len=seq_len)
        preset = dataclasses.replace(tiny, name="perf", data=data)

        def build_from_scratch() -> None:
            shutil.rmtree(Path(folder) / "train", ignore_errors=True)
            shards.build(preset, folder, ("train",), workers=1, progress=False)

        add(
            "build (sample + label + synthesize + write)",
            f"{n_seq} tasks x {seq_len} steps, ns 8-16, 1 process",
            best_time(build_from_scratch, 1),
            n_seq * seq_len,
            "steps/s",
        )
        dataset = ShardedSequences(folder, "train")
        list(batch_loader(dataset, 32, seed=0))  # page cache and memory maps warm

        def epoch() -> None:
            for batch in batch_loader(dataset, 32, seed=1):
                batch["obs"]

        add(
            "batch_loader (page cache)",
            f"{n_seq} seqs x {seq_len} steps, batch 32",
            best_time(epoch, args.repeats),
            (n_seq // 32) * 32 * seq_len,
            "steps/s",
        )

    if importlib.util.find_spec("xenoverse") is not None:
        steps = 2000 if args.quick else 10_000
        add(
            "xenoverse AnyMDPEnv.step",
            f"1 task, ns=64, {steps} steps",
            time_single_env_steps(lambda: official_single(tasks64[0]), steps, args.repeats),
            steps,
            "steps/s",
        )
    else:
        print("(xenoverse not installed: no official env row)")
    print(format_table(rows, markdown=args.markdown))
    return 0
