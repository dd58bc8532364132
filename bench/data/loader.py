"""Memory-mapped access to built shards and deterministic, rank-sliced training batches."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from bench.data.shards import SPLITS
from bench.errors import BenchError

BATCH_FIELDS = ("obs", "prompt", "tag", "action", "label", "reward", "done")
"""Step fields of a training batch, (B, T) each; a batch also holds `ns` (B,)."""
LONG_FIELDS = ("obs", "prompt", "tag", "action", "label")


class ShardedSequences:
    """Map-style view of a built split: `[i]` -> {field: (T,) array} (memory-mapped) plus `ns` (0-d)."""

    def __init__(self, root: str | os.PathLike, split: str = "train") -> None:
        if split not in SPLITS:
            raise BenchError(f"unknown data split {split!r}; choose from: {', '.join(SPLITS)}")
        path = Path(root) / split / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise BenchError(
                f"no built {split} split at {str(root)!r} ({path} missing); run `python -m bench data build`"
            ) from None
        self.root, self.split, self.manifest = Path(root), split, manifest
        self.seq_len = int(manifest["seq_len"])
        shards = manifest["shards"]
        self._first = np.array([entry["first"] for entry in shards], dtype=np.int64)
        self.folders = [Path(root) / split / f"shard-{entry['index']:05d}" for entry in shards]
        self._arrays: list[dict[str, np.ndarray] | None] = [None] * len(shards)
        self._length = int(manifest["n_sequences"])
        self.ns = np.concatenate([np.load(folder / "ns.npy").astype(np.int64) for folder in self.folders])

    def __len__(self) -> int:
        return self._length

    def shard_arrays(self, shard: int) -> dict[str, np.ndarray]:
        """The memory-mapped step fields of one shard, (n_seq, T) each."""
        arrays = self._arrays[shard]
        if arrays is None:
            arrays = {name: np.load(self.folders[shard] / f"{name}.npy", mmap_mode="r") for name in BATCH_FIELDS}
            self._arrays[shard] = arrays
        return arrays

    def locate(self, index: int) -> tuple[int, int]:
        """(shard, row) of sequence `index`."""
        if not 0 <= index < self._length:
            raise IndexError(f"sequence index {index} out of range [0, {self._length})")
        shard = int(np.searchsorted(self._first, index, side="right")) - 1
        return shard, int(index - self._first[shard])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        shard, row = self.locate(int(index))
        item = {name: array[row] for name, array in self.shard_arrays(shard).items()}
        item["ns"] = np.asarray(self.ns[index])
        return item

    def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Sequences `indices` stacked: {field: (len, T)} plus `ns` (len,), read shard by shard."""
        indices = np.asarray(indices, dtype=np.int64)
        shards = np.searchsorted(self._first, indices, side="right") - 1
        out = {
            name: np.empty((len(indices), self.seq_len), dtype=array.dtype)
            for name, array in self.shard_arrays(0).items()
        }
        for shard in np.unique(shards):
            where = np.flatnonzero(shards == shard)
            rows = indices[where] - self._first[shard]
            for name, array in self.shard_arrays(int(shard)).items():
                out[name][where] = array[rows]
        out["ns"] = self.ns[indices]
        return out


def _to_torch(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    batch = {}
    for name, array in arrays.items():
        tensor = torch.from_numpy(array)
        batch[name] = tensor.long() if name in LONG_FIELDS or name == "ns" else tensor
    return batch


def batch_loader(
    dataset: ShardedSequences, batch_size: int, seed: int, epoch: int = 0, rank: int = 0, world_size: int = 1
) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch of (batch_size // world_size, T) batches for `rank`, in an order fixed by (seed, epoch).

    Global batch g holds sequences perm[g * batch_size : (g + 1) * batch_size] of one permutation
    drawn from (seed, epoch); rank r takes its r-th contiguous slice. An incomplete last batch is dropped.
    Fields: obs, prompt, tag, action, label (int64), reward (float32), done (bool), ns (B,) int64.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise BenchError(f"world_size must be a positive int; got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise BenchError(f"rank must be an int in [0, {world_size}); got {rank!r}")
    if not isinstance(batch_size, int) or batch_size < 1 or batch_size % world_size:
        raise BenchError(f"batch_size must be a positive multiple of world_size={world_size}; got {batch_size!r}")
    if batch_size > len(dataset):
        raise BenchError(f"batch_size {batch_size} exceeds the {len(dataset)} sequences of the {dataset.split} split")
    order = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)])).permutation(len(dataset))
    local = batch_size // world_size
    for start in range(0, len(dataset) - batch_size + 1, batch_size):
        indices = order[start + rank * local : start + (rank + 1) * local]
        yield _to_torch(dataset.gather(indices))
