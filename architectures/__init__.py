"""Pluggable backbones: a registry by short name, loading by dotted path, construction for a preset."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch

from architectures.base import Backbone, State, count_parameters, detach_state, map_state
from bench.errors import BenchError
from bench.presets import get_preset

# short name -> "module:Class"; modules are imported on first use.
REGISTRY: dict[str, str] = {
    "rwkv7": "architectures.rwkv7:RWKV7",
    "gdn": "architectures.gdn:GatedDeltaNet",
    "gsa": "architectures.gsa:GatedSlotAttention",
    "mamba2": "architectures.mamba2:Mamba2",
    "transformer": "architectures.transformer:Transformer",
    "lstm": "architectures.lstm:LSTM",
}

CONTRACT = ("forward", "step", "init_state", "state_size")


def resolve(name: str) -> type[Backbone]:
    """The backbone class for a registered short name or a `package.module:Class` path."""
    target = REGISTRY.get(name)
    if target is None:
        if ":" not in name:
            raise BenchError(
                f"unknown architecture {name!r}; registered: {', '.join(REGISTRY)}; "
                "or give a dotted path such as mypkg.mymodule:MyBackbone"
            )
        target = name
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any import failure is reported in one line
        raise BenchError(f"cannot import module {module_name!r} for architecture {name!r}: {err}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise BenchError(f"module {module_name!r} has no attribute {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        missing = [m for m in CONTRACT if not callable(getattr(cls, m, None))]
        if missing or not isinstance(cls, type):
            raise BenchError(
                f"{target} does not satisfy the backbone contract: missing {', '.join(missing) or 'a class'}"
            )
    return cls


def build_backbone(arch: str | type[Backbone], preset: str, seed: int = 0, **overrides: Any) -> Backbone:
    """A backbone sized for `preset`: d_model from the preset, `preset_kwargs[preset]` updated by
    `overrides`, weights fixed by `seed` (the global RNG state is left as it was)."""
    spec = get_preset(preset)
    cls = resolve(arch) if isinstance(arch, str) else arch
    if not isinstance(cls, type):
        raise BenchError(f"architecture {arch!r} is neither a name, a dotted path nor a class")
    name = f"{cls.__module__}:{cls.__qualname__}"
    preset_kwargs = getattr(cls, "preset_kwargs", None) or {}
    if preset not in preset_kwargs and "n_layers" not in overrides:
        raise BenchError(
            f"{name} has no preset_kwargs for preset {preset!r} (it has: {', '.join(preset_kwargs) or 'none'}); "
            "add them or pass n_layers and the other constructor arguments as overrides"
        )
    kwargs = {**preset_kwargs.get(preset, {}), **overrides}
    if "seed" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # for constructors that draw from the global generator
        try:
            return cls(spec.d_model, **kwargs)
        except TypeError as err:
            raise BenchError(f"cannot construct {name} with d_model={spec.d_model}, {kwargs}: {err}") from None


__all__ = [
    "Backbone",
    "build_backbone",
    "State",
    "REGISTRY",
    "resolve",
    "count_parameters",
    "detach_state",
    "map_state",
]
