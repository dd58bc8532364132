"""Benchmark presets, defined in one place.

A preset fixes everything that must be identical across architectures: the model width the
recipe embeds into, and the parameter budget every backbone must meet (within 10 %).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import BenchError


@dataclass(frozen=True)
class Preset:
    name: str
    """Short name used on the command line and in result paths."""
    d_model: int
    """Width of the token embeddings fed to the backbone, and of its output."""
    param_budget: int
    """Target number of backbone parameters; every backbone must be within `param_tolerance`."""
    param_tolerance: float = 0.10
    """Allowed relative deviation of a backbone's parameter count from `param_budget`."""
    n_heads: int = 4
    """Default number of heads for multi-head backbones (an architecture may choose its own)."""


PRESETS: dict[str, Preset] = {
    # Trains end to end on a 2-core CPU.
    "tiny": Preset(name="tiny", d_model=128, param_budget=400_000, n_heads=4),
    # One GPU, about an hour.
    "small": Preset(name="small", d_model=256, param_budget=5_000_000, n_heads=4),
    # The paper's scale: hidden 512, RWKV-7 / GDN with 18 layers, 8 heads.
    "paper": Preset(name="paper", d_model=512, param_budget=60_000_000, n_heads=8),
}

DEFAULT_PRESET = "tiny"


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a BenchError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise BenchError(f"unknown preset {name!r}; choose from: {', '.join(PRESETS)}") from None
