"""The benchmark is the same on every machine: the probe's digests (tasks, solver outputs, a data
shard, baseline rollouts; tests/machine_probe.py) agree under every BLAS kernel, BLAS thread count
and SIMD dispatch level we can force on one machine, and match the committed test manifests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bench.data import shards
from bench.presets import PRESETS

PROBE = Path(__file__).with_name("machine_probe.py")
CLEARED = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NPY_DISABLE_CPU_FEATURES")


def _dispatch_levels() -> list[str]:
    """NumPy's runtime-dispatched CPU feature groups (AVX2/AVX-512 on x86-64, SVE etc. on ARM)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__
    return list(__cpu_dispatch__)


def variants() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {"default": {}}
    for i, core in enumerate(("Haswell", "SkylakeX", "Sandybridge", "Prescott", "Nehalem", "Zen")):
        out[f"{core}, {1 + i % 2} thread(s)"] = {"OPENBLAS_CORETYPE": core, "OPENBLAS_NUM_THREADS": str(1 + i % 2)}
    levels = _dispatch_levels()
    if levels:
        out["numpy without SIMD dispatch"] = {"NPY_DISABLE_CPU_FEATURES": " ".join(levels)}
        out["numpy without its widest SIMD"] = {"NPY_DISABLE_CPU_FEATURES": " ".join(levels[-3:])}
    return out


def run_probe(changes: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(changes)
    done = subprocess.run(
        [sys.executable, str(PROBE)], env=env, capture_output=True, text=True, timeout=300,
        cwd=PROBE.parents[1],
    )  # fmt: skip
    assert done.returncode == 0, f"probe failed under {changes}:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probes() -> dict[str, dict]:
    cases = variants()
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(cases, pool.map(run_probe, cases.values())))


def _differences(a: dict, b: dict, path: str = "") -> list[str]:
    if isinstance(a, dict):
        return [d for key in a for d in _differences(a[key], b.get(key), f"{path}/{key}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def test_every_blas_kernel_thread_count_and_simd_level_defines_the_same_benchmark(probes):
    reference_name, reference = next(iter(probes.items()))
    differing = {name: _differences(reference, probe) for name, probe in probes.items() if probe != reference}
    assert not differing, f"differs from {reference_name!r}: " + "; ".join(
        f"{name}: {', '.join(paths[:6])}{' ...' if len(paths) > 6 else ''}" for name, paths in differing.items()
    )


def test_probed_tasks_match_the_committed_test_manifests(probes):
    committed = {}
    for name in ("tiny", "small"):
        for record in json.loads((shards.committed_dir(PRESETS[name]) / "test.json").read_text())["tasks"]:
            committed[record["seed"]] = record["fingerprint"]
    for name, probe in probes.items():
        wrong = [(ns, seed) for ns, seed, fingerprint in probe["test_tasks"] if committed[seed] != fingerprint]
        assert not wrong, f"{name}: (ns, seed) of tasks that differ from the committed manifests: {wrong}"


def test_the_probe_sees_a_one_bit_change():
    """The digests are sensitive: one reward entry moved by one unit in the last place changes them."""
    from machine_probe import digest

    reward = np.linspace(-1.0, 1.0, 64)
    moved = reward.copy()
    moved[17] = np.nextafter(moved[17], np.inf)
    assert digest(reward) != digest(moved)
