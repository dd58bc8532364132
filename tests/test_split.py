"""The frozen split: disjoint seed ranges, per-task ns, test groups and the committed manifests."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench.data import shards
from bench.data import split as sp
from bench.errors import BenchError
from bench.presets import PRESETS


def micro(**data_changes):
    tiny = PRESETS["tiny"]
    settings = {"train_tasks": 12, "valid_tasks": 4, "test_ns": (1, 8, 16), "test_tasks_per_ns": 3, **data_changes}
    data = dataclasses.replace(tiny.data, **settings)
    return dataclasses.replace(tiny, name="micro", data=data)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_train_valid_test_seed_ranges_are_disjoint(name):
    preset = PRESETS[name]
    spec = preset.data
    train = {sp.train_task_seed(preset, i) for i in range(0, spec.train_tasks, max(1, spec.train_tasks // 4096))}
    train.add(sp.train_task_seed(preset, spec.train_tasks - 1))
    valid = {sp.valid_task_seed(preset, i) for i in range(spec.valid_tasks)}
    test = {seed for _, _, seed in sp.test_task_specs(preset)}
    assert len(valid) == spec.valid_tasks and len(test) == len(spec.test_ns) * spec.test_tasks_per_ns
    assert not train & valid and not train & test and not valid & test
    # the role sits in its own bit field: every train seed is below every valid seed, below every test seed
    assert max(train) < min(valid) and max(valid) < min(test)


def test_train_ns_comes_from_the_tasks_own_seed_and_covers_the_range():
    preset = micro(train_ns=(8, 11), train_tasks=200)
    tasks = [sp.train_task(preset, i) for i in range(40)]
    assert all(8 <= t.ns <= 11 for t in tasks)
    assert {t.ns for t in tasks} == {8, 9, 10, 11}
    for i, task in enumerate(tasks[:5]):
        assert task.seed == sp.train_task_seed(preset, i)
        assert task.ns == sp.draw_ns(task.seed, (8, 11))
    # changing the number of train tasks changes no task
    bigger = micro(train_ns=(8, 11), train_tasks=400)
    assert sp.train_task(bigger, 7) == tasks[7]


def test_valid_tasks_are_held_out_and_made_like_train_tasks():
    preset = micro()
    valid = [sp.valid_task(preset, i) for i in range(preset.data.valid_tasks)]
    train_fps = {sp.train_task(preset, i).fingerprint() for i in range(preset.data.train_tasks)}
    assert all(8 <= t.ns <= 16 for t in valid)
    assert not train_fps & {t.fingerprint() for t in valid}


def test_test_tasks_grouped_by_ns_and_nested_across_presets():
    preset = micro()
    tasks = sp.test_tasks(preset)
    assert [t.ns for t in tasks] == [1] * 3 + [8] * 3 + [16] * 3
    assert all(t.seed is not None and t.na == 5 for t in tasks)
    assert len({t.seed for t in tasks}) == len(tasks)
    # a smaller group is a prefix of the same ns group of a larger preset
    tiny_specs = sp.test_task_specs(PRESETS["tiny"])
    tiny_by_ns = {ns: [s for s in tiny_specs if s[0] == ns] for ns in (1, 8, 16)}
    assert [t.seed for t in tasks if t.ns == 8] == [s[2] for s in tiny_by_ns[8][:3]]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_committed_test_manifest_matches_the_split(name):
    preset = PRESETS[name]
    manifest = json.loads((shards.committed_dir(preset) / "test.json").read_text())
    specs = sp.test_task_specs(preset)
    assert [(r["ns"], r["na"], r["seed"]) for r in manifest["tasks"]] == specs
    assert [r["index"] for r in manifest["tasks"]] == list(range(len(specs)))
    # spot check: the first task of each ns group regenerates to its recorded fingerprint
    for ns in preset.data.test_ns:
        record = next(r for r in manifest["tasks"] if r["ns"] == ns)
        task = sp.sample_tasks([(record["ns"], record["na"], record["seed"])])[0]
        assert task.fingerprint() == record["fingerprint"]


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_committed_train_digest_matches_the_definition(name):
    committed = shards.committed_train(PRESETS[name])
    assert committed is not None, f"datasets/anymdp-v2/{name}/train.json is missing or stale"
    assert len(committed["shards"]) == shards.n_shards(PRESETS[name], "train")
    assert len(committed["dataset_fingerprint"]) == 64


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"train_ns": (4, 8)}, "train_ns"),
        ({"train_ns": (16, 8)}, "train_ns"),
        ({"seq_len": 0}, "seq_len"),
        ({"shard_size": -1}, "shard_size"),
        ({"na": 1}, "na"),
        ({"test_ns": (8, 8)}, "test_ns"),
        ({"test_ns": (2,)}, "test_ns"),
        ({"valid_tasks": 0}, "valid_tasks"),
        ({"policy_weights": (1, 1, 1)}, "policy_weights"),
        ({"policy_weights": (0, 0, 0, 0, 0, -1)}, "policy_weights"),
    ],
)
def test_bad_data_specs_raise_clear_errors(changes, words):
    with pytest.raises(BenchError, match=words):
        sp.check_data_spec(micro(**changes))


def test_bad_indices_and_roles_raise():
    preset = micro()
    for bad in (-1, 12, 2.0, "3"):
        with pytest.raises(BenchError, match="train task index"):
            sp.train_task_seed(preset, bad)
    with pytest.raises(BenchError, match="valid task index"):
        sp.valid_task(preset, 4)
    with pytest.raises(BenchError, match="unknown split role"):
        sp.task_seed(preset, "dev", 0)


def test_policy_weights_enter_the_preset_digest_and_the_data_definition():
    tiny = PRESETS["tiny"]
    other = dataclasses.replace(
        tiny, data=dataclasses.replace(tiny.data, policy_weights=(0.1, 0.2, 0.2, 0.25, 0.2, 0.05))
    )
    assert other.digest() != tiny.digest()
    assert shards.definition(tiny, "train")["policy_weights"] == [0.25, 0.35, 0.4, 0.0, 0.0, 0.0]
    assert shards.definition(other, "train")["policy_weights"] == [0.1, 0.2, 0.2, 0.25, 0.2, 0.05]
