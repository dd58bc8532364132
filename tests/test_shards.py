"""Shards: identical bytes in any process and order, checksums, resume, bad input, task drift."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from bench.cli import main as cli_main
from bench.data import shards
from bench.data import split as sp
from bench.errors import BenchError
from bench.presets import PRESETS


def micro(**data_changes):
    tiny = PRESETS["tiny"]
    settings = {
        "train_tasks": 10,
        "valid_tasks": 3,
        "seq_len": 96,
        "shard_size": 4,
        "train_ns": (8, 10),
        **data_changes,
    }
    return dataclasses.replace(tiny, name="micro", data=dataclasses.replace(tiny.data, **settings))


def checksums(root):
    return {str(p.relative_to(root)): shards.sha256_file(p) for p in sorted(root.rglob("*.npy"))}


def mtimes(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    manifests = shards.build(micro(), root, workers=1, progress=False)
    return root, manifests


def _build_part(args):
    root, part = args
    shards.build(micro(), root, shard=part, workers=1, progress=False)


def test_layout_and_manifests(built):
    root, manifests = built
    assert manifests["train"]["n_sequences"] == 10 and len(manifests["train"]["shards"]) == 3
    assert [e["n_seq"] for e in manifests["train"]["shards"]] == [4, 4, 2]
    assert manifests["valid"]["n_sequences"] == 3
    obs = np.load(root / "train" / "shard-00002" / "obs.npy", mmap_mode="r")
    assert obs.shape == (2, 96) and obs.dtype == np.int16
    seeds = np.load(root / "train" / "shard-00001" / "seed.npy")
    assert seeds.tolist() == [sp.train_task_seed(micro(), i) for i in range(4, 8)]
    assert shards.verify_shards(micro(), root) == []


def test_identical_bytes_from_other_processes_and_orders(built, tmp_path):
    root, _ = built
    other = tmp_path / "other"
    with ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:  # a fresh process, shards in another order
        list(pool.map(_build_part, [(other, (1, 2))]))
        list(pool.map(_build_part, [(other, (0, 2))]))
    assert checksums(other) == checksums(root)
    assert json.loads((other / "train" / "manifest.json").read_text()) == json.loads(
        (root / "train" / "manifest.json").read_text()
    )


def test_corrupt_byte_is_detected_and_rebuilt_alone(built, tmp_path):
    root, _ = built
    copy = tmp_path / "copy"
    shards.build(micro(), copy, workers=1, progress=False)
    target = copy / "train" / "shard-00001" / "reward.npy"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x01
    target.write_bytes(bytes(data))
    problems = shards.verify_shards(micro(), copy)
    assert len(problems) == 1
    assert "train shard 1" in problems[0] and "corrupt file reward.npy" in problems[0]
    assert "python -m bench data build --preset micro --split train --shard 1/3" in problems[0]
    before = mtimes(copy)
    shards.build(micro(), copy, workers=1, progress=False)
    after = mtimes(copy)
    assert checksums(copy) == checksums(root)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed and all(name.startswith("train/shard-00001/") or name.endswith("manifest.json") for name in changed)


def test_missing_shard_named_with_command(tmp_path, capsys):
    problems = shards.verify_shards(micro(), tmp_path / "empty")
    assert len(problems) == 4  # 3 train shards + 1 valid shard
    assert all("missing" in p and "python -m bench data build --preset micro" in p for p in problems)
    code = cli_main(["data", "verify", "--preset", "tiny", "--root", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 1 and "--shard 15/16" in err and "FAILED" in err


def test_interrupted_build_resumes(monkeypatch, tmp_path):
    real = shards._write_shard
    calls = []

    def interrupt_after_first(*args):
        if calls:
            raise KeyboardInterrupt
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(shards, "_write_shard", interrupt_after_first)
    with pytest.raises(KeyboardInterrupt):
        shards.build(micro(), tmp_path, workers=1, progress=False)
    monkeypatch.setattr(shards, "_write_shard", real)
    finished = mtimes(tmp_path / "train" / "shard-00000")
    assert "shard.json" in finished and not (tmp_path / "train" / "manifest.json").exists()
    manifests = shards.build(micro(), tmp_path, workers=1, progress=False)
    assert manifests["train"] is not None
    assert mtimes(tmp_path / "train" / "shard-00000") == finished  # not rebuilt


@pytest.mark.parametrize("spec", ["3/2", "a/b", "0/0", "1/2/3", "-1/2", "2"])
def test_bad_shard_specs_raise(spec):
    with pytest.raises(BenchError, match="k/N"):
        shards.parse_shard_spec(spec)


def test_bad_input_leaves_finished_shards_intact(built, tmp_path, capsys):
    root, _ = built
    before = checksums(root)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(BenchError, match="is a file"):
        shards.build(micro(), a_file, progress=False)
    with pytest.raises(BenchError, match="another definition"):
        shards.build(micro(seq_len=64), root, progress=False)
    with pytest.raises(BenchError, match="train_ns"):
        shards.build(micro(train_ns=(2, 4)), root, progress=False)
    assert cli_main(["data", "build", "--preset", "tiny", "--shard", "0/0", "--root", str(root)]) == 2
    assert cli_main(["data", "build", "--preset", "huge"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert checksums(root) == before and shards.verify_shards(micro(), root) == []


def test_verify_tasks_names_each_drifted_task_its_arrays_and_the_likely_cause(built, monkeypatch):
    root, _ = built
    assert shards.verify_tasks(micro(), root, progress=False) == (13, [])  # no committed test.json for "micro"
    seeds = {sp.train_task_seed(micro(), i): i for i in (2, 6, 7)}
    real = sp.sample_task

    def drifting(ns, na, seed):
        task = real(ns, na, seed=seed)
        if seeds.get(seed) == 2:  # another task altogether
            return real(ns, na, seed=seed + 1)
        reward = task.reward.copy()
        if seeds.get(seed) == 6:  # rounding-level differences, as another CPU's arithmetic would make
            reward[0, 0, :] *= 1 + 1e-13
        if seeds.get(seed) == 7:  # one entry off in its last bit: the sum does not move
            reward[0, 0, 1] = np.nextafter(reward[0, 0, 1], np.inf)
        return dataclasses.replace(task, reward=reward)

    monkeypatch.setattr(sp, "sample_task", drifting)
    checked, drifted = shards.verify_tasks(micro(), root, progress=False)
    assert checked == 13 and len(drifted) == 3
    assert drifted[0].startswith("train task 2 (ns ") and "a different task" in drifted[0]
    assert drifted[1].startswith("train task 6 (ns ") and "differs in reward (sum" in drifted[1]
    assert "transition" not in drifted[1] and "rounding-level difference" in drifted[1]
    assert "no array's sum moved" in drifted[2] and "rounding-level difference" in drifted[2]


def test_explain_drift_uses_the_array_digests_of_test_records():
    task = sp.sample_tasks([(8, 5, 11)])[0]
    record = shards.task_record(0, task)
    assert shards.explain_drift("test task 0", task, record["fingerprint"], record["arrays"]) is None
    moved = dataclasses.replace(task, permutation=task.permutation[::-1].copy())
    line = shards.explain_drift("test task 0", moved, record["fingerprint"], record["arrays"])
    assert "permutation (same sum: entries moved" in line and "reward" not in line


def test_policy_weights_are_part_of_the_data_definition(built, tmp_path):
    root, _ = built
    other = micro(policy_weights=(0.1, 0.2, 0.2, 0.25, 0.2, 0.05))
    assert shards.definition(other, "train") != shards.definition(micro(), "train")
    with pytest.raises(BenchError, match="another definition"):
        shards.build(other, root, workers=1, progress=False)
    with pytest.raises(BenchError, match="policy_weights"):
        shards.build(micro(policy_weights=(1, -1, 0, 0, 0, 0)), tmp_path, workers=1, progress=False)
