"""DPD synthesis (`bench.data.synth`), a shard build end to end, and the training loader."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from bench.anymdp.solvers import TaskArrays, label_policy
from bench.anymdp.task import Task
from bench.data import shards
from bench.data import split as sp
from bench.data.loader import ShardedSequences, batch_loader
from bench.data.synth import synthesize
from bench.presets import PRESETS, Preset
from benchmarks.record import record
from benchmarks.scale import SCALE

TINY = PRESETS["tiny"]
TINY_ROW = f"tiny (ns {TINY.data.train_ns[0]}-{TINY.data.train_ns[1]})"


def tiny_variant(n_seq: int) -> Preset:
    """The tiny preset's data with `n_seq` training sequences of `SCALE.data_len` steps."""
    data = dataclasses.replace(TINY.data, train_tasks=n_seq, valid_tasks=1, seq_len=SCALE.data_len)
    return dataclasses.replace(TINY, name="speed", data=data)


def test_label_policy(benchmark, env_tasks: list[Task]) -> None:
    arrays = TaskArrays.stack(env_tasks[: SCALE.synth_tasks])
    record(benchmark, "data", f"ns {SCALE.env_ns}", "label_policy", f"{arrays.batch} tasks", {"tasks": arrays.batch})
    benchmark.pedantic(label_policy, args=(arrays,), rounds=SCALE.rounds, warmup_rounds=SCALE.warmup)


def test_synthesize(benchmark, env_tasks: list[Task]) -> None:
    tasks = env_tasks[: SCALE.synth_tasks]
    labels = label_policy(TaskArrays.stack(tasks))
    setting = f"{len(tasks)} tasks x {SCALE.synth_len} steps"
    record(
        benchmark,
        "data",
        f"ns {SCALE.env_ns}",
        "synthesize, labels given",
        setting,
        {"env steps": len(tasks) * SCALE.synth_len},
    )
    benchmark.pedantic(
        synthesize,
        args=(tasks, SCALE.synth_len),
        kwargs={"labels": labels},
        rounds=SCALE.rounds,
        warmup_rounds=SCALE.warmup,
    )


def test_synthesize_tiny(benchmark) -> None:
    tasks = sp.sample_tasks(sp.split_task_specs(TINY, "train", range(SCALE.tiny_tasks)))
    setting = f"first {len(tasks)} training tasks x {SCALE.data_len} steps"
    record(
        benchmark, "data", TINY_ROW, "synthesize, labels included", setting, {"env steps": len(tasks) * SCALE.data_len}
    )
    benchmark.pedantic(synthesize, args=(tasks, SCALE.data_len), rounds=SCALE.rounds, warmup_rounds=SCALE.warmup)


def test_build(benchmark, tmp_path: Path) -> None:
    preset = tiny_variant(SCALE.build_tasks)
    setting = f"{SCALE.build_tasks} sequences x {SCALE.data_len} steps, 1 process"

    def build() -> None:
        shards.build(preset, tmp_path, ("train",), workers=1, progress=False)

    record(
        benchmark,
        "data",
        TINY_ROW,
        "build: sample + label + synthesize + write",
        setting,
        {"env steps": SCALE.build_tasks * SCALE.data_len},
    )
    benchmark.pedantic(build, setup=lambda: shutil.rmtree(tmp_path / "train", ignore_errors=True), rounds=SCALE.rounds)


@pytest.fixture(scope="module")
def built_split(tmp_path_factory: pytest.TempPathFactory) -> ShardedSequences:
    root = tmp_path_factory.mktemp("split")
    shards.build(tiny_variant(SCALE.loader_tasks), root, ("train",), workers=1, progress=False)
    return ShardedSequences(root, "train")


def test_loader(benchmark, built_split: ShardedSequences) -> None:
    batch = SCALE.loader_batch

    def epoch() -> None:
        for item in batch_loader(built_split, batch, seed=1):
            item["obs"]

    steps = len(built_split) // batch * batch * built_split.seq_len
    setting = f"one epoch of {len(built_split)} sequences x {built_split.seq_len} steps, batch {batch}"
    record(benchmark, "data", TINY_ROW, "batch_loader (page cache)", setting, {"env steps": steps})
    benchmark.pedantic(epoch, rounds=SCALE.loader_rounds, warmup_rounds=SCALE.warmup)
