"""Digests of a micro run, to prove that a refactor changes no number.

`result_digest` covers every number of a result file except what describes the machine and the
moment (times, throughput, memory, packages, git state); `weights_digest` covers the trained
weights of the run's final checkpoint. Both come from torch arithmetic, which is bit-identical only
on the same CPU kernel family, so the recorded values (`micro_digests.json`) are keyed by
`kernel_family()` and checked only where one was recorded. The same capability is not enough: the
AVX512 digests recorded on an Intel Xeon differ on an AMD EPYC (family 25), so the key names the
vendor and CPU family too. (The cause was not isolated: on the EPYC, MKL_CBWR=AVX512 leaves gdn's
digests as they are, MKL_CBWR=COMPATIBLE changes them.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

from architectures import REGISTRY
from bench.presets import DataSpec, get_preset
from bench.run import cpu_identity

TINY = get_preset("tiny")
MICRO = dataclasses.replace(
    TINY,
    data=DataSpec(
        train_tasks=8, train_ns=(8, 8), seq_len=64, shard_size=4, test_ns=(1, 8), test_tasks_per_ns=3, valid_tasks=4
    ),
    recipe=dataclasses.replace(
        TINY.recipe,
        segment_len=32,
        batch_size=4,
        train_steps=3,
        warmup_steps=1,
        checkpoint_every=2,
        eval_steps=400,
        temperature=(1.0, 0.1, 400),
    ),
)
"""Keeps the name "tiny" (backbones have settings per preset name); only the data and the amount
of training shrink."""
ARCHS = tuple(REGISTRY)

RECORDED = Path(__file__).with_name("micro_digests.json")
MACHINE_FIELDS = (
    "backbone_source",  # the code's state, as git_commit
    "command",
    "cpu",
    "created_utc",
    "device",
    "git_commit",
    "git_dirty",
    "packages",
    "peak_memory_bytes",
    "platform",
    "python",
    "torch_threads",
    "train_tokens_per_s",
    "wall_time_s",
)


def result_digest(doc: dict) -> str:
    kept = {**doc, "manifest": {k: v for k, v in doc["manifest"].items() if k not in MACHINE_FIELDS}}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def weights_digest(checkpoint: Path) -> str:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def kernel_family() -> str:
    """torch's CPU capability, the CPU vendor and family, e.g. "AVX512 AuthenticAMD family 25"."""
    cpu = cpu_identity()
    return f"{cpu['capability']} {cpu['vendor']} family {cpu['family']}"


def recorded(arch: str) -> dict | None:
    """The digests recorded for `arch` on this CPU kernel family, or None."""
    table = json.loads(RECORDED.read_text()) if RECORDED.exists() else {}
    return table.get(kernel_family(), {}).get(arch)


def digests(arch: str, root: Path, data_root: Path) -> dict:
    """Run the micro pipeline for `arch` under `root` (one thread, no progress) and digest it."""
    from bench.report.results import load_result
    from bench.run import RunOptions, run

    options = RunOptions(
        out=root / "results", run_dir=root / "runs", data_root=str(data_root), progress=False, threads=1
    )
    (path,) = run(arch, MICRO, [0], options)
    doc, _ = load_result(path)
    return {
        "result": result_digest(doc),
        "weights": weights_digest(root / "runs" / "tiny" / arch / "seed0" / "checkpoint.pt"),
    }


def record() -> None:
    """Record the digests of every shipped backbone for this CPU kernel family (after a change
    that is meant to change numbers, say why in the commit)."""
    table = json.loads(RECORDED.read_text()) if RECORDED.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        entry = {arch: digests(arch, Path(tmp) / arch, Path(tmp) / "data") for arch in ARCHS}
    table[kernel_family()] = entry
    RECORDED.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    sys.exit(record())
