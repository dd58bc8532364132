"""The loader: memory-mapped items, deterministic shuffled batches, rank slices, segments."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.data import ensure_data
from bench.data.loader import BATCH_FIELDS, ShardedSequences, batch_loader
from bench.errors import BenchError
from bench.presets import PRESETS
from bench.recipe import segments


def micro():
    tiny = PRESETS["tiny"]
    data = dataclasses.replace(tiny.data, train_tasks=24, valid_tasks=5, seq_len=80, shard_size=7, train_ns=(8, 9))
    return dataclasses.replace(tiny, name="micro", data=data)


@pytest.fixture(scope="module")
def info(tmp_path_factory):
    return ensure_data(micro(), tmp_path_factory.mktemp("data"), progress=False, workers=1)


@pytest.fixture(scope="module")
def dataset(info):
    return ShardedSequences(info.root, "train")


def test_ensure_data_describes_the_build(info, dataset):
    assert (info.n_sequences, info.n_valid, info.seq_len) == (24, 5, 80)
    assert len(dataset) == 24 and len(ShardedSequences(info.root, "valid")) == 5
    again = ensure_data(micro(), info.root, progress=False, workers=1)
    assert again.fingerprint == info.fingerprint and len(info.fingerprint) == 64


def test_items_are_memory_mapped_rows(info, dataset):
    item = dataset[9]  # shard 1, row 2
    raw = np.load(info.root / "train" / "shard-00001" / "obs.npy")
    np.testing.assert_array_equal(item["obs"], raw[2])
    assert isinstance(dataset.shard_arrays(1)["obs"], np.memmap)
    assert {k: v.shape for k, v in item.items()} == {**{k: (80,) for k in BATCH_FIELDS}, "ns": ()}
    assert 8 <= int(item["ns"]) <= 9
    with pytest.raises(IndexError):
        dataset[24]


def collect(dataset, **kwargs):
    return list(batch_loader(dataset, **kwargs))


def test_batches_are_deterministic_shuffled_and_typed(dataset):
    first = collect(dataset, batch_size=6, seed=3)
    again = collect(dataset, batch_size=6, seed=3)
    other_epoch = collect(dataset, batch_size=6, seed=3, epoch=1)
    assert len(first) == 4
    for a, b in zip(first, again):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a["obs"], b["obs"]) for a, b in zip(first, other_epoch))
    batch = first[0]
    assert batch["obs"].shape == (6, 80) and batch["ns"].shape == (6,)
    for name in ("obs", "prompt", "tag", "action", "label", "ns"):
        assert batch[name].dtype == torch.int64
    assert batch["reward"].dtype == torch.float32 and batch["done"].dtype == torch.bool
    # an epoch visits every sequence once: match rows back to the dataset by their observations
    seen = torch.cat([b["obs"] for b in first])
    rows = {tuple(dataset[i]["obs"].tolist()) for i in range(len(dataset))}
    assert {tuple(r.tolist()) for r in seen} == rows


def test_ranks_slice_the_same_global_batch(dataset):
    whole = collect(dataset, batch_size=8, seed=5, epoch=2)
    parts = [collect(dataset, batch_size=8, seed=5, epoch=2, rank=r, world_size=4) for r in range(4)]
    for g, batch in enumerate(whole):
        for name in batch:
            joined = torch.cat([parts[r][g][name] for r in range(4)])
            assert torch.equal(joined, batch[name])
    assert parts[0][0]["obs"].shape == (2, 80)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"batch_size": 6, "world_size": 4}, "multiple of world_size"),
        ({"batch_size": 4, "world_size": 2, "rank": 2}, "rank"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 25}, "exceeds"),
        ({"batch_size": 4, "world_size": 0}, "world_size"),
    ],
)
def test_bad_loader_arguments_raise(dataset, kwargs, words):
    with pytest.raises(BenchError, match=words):
        next(batch_loader(dataset, seed=0, **kwargs))


def test_segments_are_consecutive_slices(dataset):
    batch = next(batch_loader(dataset, batch_size=4, seed=0))
    parts = [part for _, part in segments(batch, 32)]
    assert [s["obs"].shape[1] for s in parts] == [32, 32, 16]
    for name in BATCH_FIELDS:
        assert torch.equal(torch.cat([s[name] for s in parts], dim=1), batch[name])
    assert all(torch.equal(s["ns"], batch["ns"]) for s in parts)
    with pytest.raises(BenchError, match="segment_len"):
        next(segments(batch, 0))


def test_missing_split_raises(tmp_path):
    with pytest.raises(BenchError, match="no built train split"):
        ShardedSequences(tmp_path, "train")
    with pytest.raises(BenchError, match="unknown data split"):
        ShardedSequences(tmp_path, "test")
