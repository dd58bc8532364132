"""`architectures` stands alone: bench may depend on it, never the reverse, so that a backbone can be
used (and submitted) without the benchmark. Sizes of the shipped backbones live in one table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fixtures_arch
import pytest

from architectures import REGISTRY, SIZES, BackboneError, resolve, size_kwargs

ROOT = Path(__file__).parents[1]
WITHOUT_BENCH = """
import importlib
import pkgutil
import sys


class NoBench:
    '''Refuses `bench` and its submodules, as if the package were not there.'''

    def find_spec(self, name, path=None, target=None):
        if name == "bench" or name.startswith("bench."):
            raise ImportError(f"{name} is not importable here")
        return None


sys.meta_path.insert(0, NoBench())

import torch

import architectures

for module in pkgutil.walk_packages(architectures.__path__, "architectures."):
    importlib.import_module(module.name)
for name, target in architectures.REGISTRY.items():
    importlib.import_module(target.partition(":")[0])
    model = architectures.build_backbone(name, 128, "tiny")
    y, _ = model(torch.randn(1, 4, 128, generator=torch.Generator().manual_seed(0)))
    assert y.shape == (1, 4, 128) and bool(torch.isfinite(y).all()), name
try:
    import bench
except ImportError:
    print("built", " ".join(architectures.REGISTRY))
"""


def test_architectures_import_build_and_run_without_bench():
    done = subprocess.run([sys.executable, "-c", WITHOUT_BENCH], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["built", *REGISTRY]  # and `bench` really was unimportable


def test_size_kwargs_reads_sizes_for_shipped_backbones_and_preset_kwargs_for_others():
    assert size_kwargs("gdn", "tiny") == SIZES["gdn"]["tiny"]
    assert size_kwargs(resolve("gsa"), "small") == SIZES["gsa"]["small"]
    assert size_kwargs("architectures.lstm:LSTM", "paper") == SIZES["lstm"]["paper"]
    assert size_kwargs(fixtures_arch.RunningSum, "tiny") == fixtures_arch.RunningSum.preset_kwargs["tiny"]
    size_kwargs("gdn", "tiny")["n_layers"] = 99  # a copy: the table is not changed through it
    assert SIZES["gdn"]["tiny"]["n_layers"] == 2


def test_shipped_backbones_declare_no_preset_kwargs():
    """One table of sizes: a copy on a shipped class would be ignored and drift."""
    assert [name for name in REGISTRY if "preset_kwargs" in vars(resolve(name))] == []


def test_a_missing_size_is_one_backbone_error():
    with pytest.raises(BackboneError, match="architecture 'lstm' has no settings for size 'huge' \\(it has: tiny"):
        size_kwargs("lstm", "huge")
    with pytest.raises(BackboneError, match="'fixtures_arch:NoPresets' has no settings for size 'tiny' \\(it has: no"):
        size_kwargs(fixtures_arch.NoPresets, "tiny")
