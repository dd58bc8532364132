"""Pluggable backbones, usable without the rest of the benchmark (nothing here imports `bench`).

The public surface: the contract (`Backbone`, `BlockStack`, `State` and the state helpers), the
shipped backbones by short name (`REGISTRY`) with their sizes (`SIZES`), and building one
(`resolve`, `size_kwargs`, `build_backbone`). Bad input raises `BackboneError`.
"""

from __future__ import annotations

from architectures.base import Backbone, BlockStack, State, count_parameters, detach_state, map_state
from architectures.build import build_backbone, resolve, size_kwargs
from architectures.errors import BackboneError
from architectures.registry import REGISTRY, SIZES

__all__ = [
    "Backbone",
    "BackboneError",
    "BlockStack",
    "REGISTRY",
    "SIZES",
    "State",
    "build_backbone",
    "count_parameters",
    "detach_state",
    "map_state",
    "resolve",
    "size_kwargs",
]
