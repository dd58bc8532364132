"""Pluggable backbones: a registry by short name, and loading by dotted path."""

from __future__ import annotations

import importlib

from architectures.base import Backbone, State, count_parameters, detach_state, map_state
from bench.errors import BenchError

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


__all__ = [
    "Backbone",
    "State",
    "REGISTRY",
    "resolve",
    "count_parameters",
    "detach_state",
    "map_state",
]
