"""Finding a backbone class by name or dotted path, its constructor arguments at a size, and building it."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch

from architectures.base import Backbone
from architectures.errors import BackboneError
from architectures.registry import REGISTRY, SIZES

CONTRACT = ("forward", "step", "init_state", "state_size")
"""The methods a backbone class must have when it does not subclass `Backbone`."""
_REGISTERED = {target: name for name, target in REGISTRY.items()}


def resolve(name: str) -> type[Backbone]:
    """The backbone class for a registered short name or a `package.module:Class` path."""
    target = REGISTRY.get(name)
    if target is None:
        if ":" not in name:
            raise BackboneError(
                f"unknown architecture {name!r}; registered: {', '.join(REGISTRY)}; "
                "or give a dotted path such as mypkg.mymodule:MyBackbone"
            )
        target = name
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any import failure is reported in one line
        raise BackboneError(f"cannot import module {module_name!r} for architecture {name!r}: {err}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise BackboneError(f"module {module_name!r} has no attribute {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        missing = [m for m in CONTRACT if not callable(getattr(cls, m, None))]
        if missing or not isinstance(cls, type):
            raise BackboneError(
                f"{target} does not satisfy the backbone contract: missing {', '.join(missing) or 'a class'}"
            )
    return cls


def size_kwargs(arch: str | type[Backbone], size: str) -> dict[str, Any]:
    """The constructor keyword arguments (other than d_model) of `arch` at `size`: a registered
    backbone's row of `SIZES` (also when given its class), else the class's `preset_kwargs`, which
    is how a backbone outside the repository declares its sizes."""
    cls = _as_class(arch)
    target = f"{cls.__module__}:{cls.__qualname__}"
    name = _REGISTERED.get(target)
    sizes = SIZES.get(name, {}) if name is not None else getattr(cls, "preset_kwargs", None) or {}
    if size not in sizes:
        raise BackboneError(
            f"architecture {name or target!r} has no settings for size {size!r} "
            f"(it has: {', '.join(sizes) or 'none'}); a registered backbone takes them from "
            "architectures.registry.SIZES, another from its class's preset_kwargs"
        )
    return dict(sizes[size])


def build_backbone(
    arch: str | type[Backbone], d_model: int, size: str | None = None, seed: int = 0, **overrides: Any
) -> Backbone:
    """`arch` at width `d_model` with the constructor arguments of `size` (`size_kwargs`) updated by
    `overrides`, or with `overrides` alone where `size` is None; weights fixed by `seed` (the global
    RNG state is left as it was)."""
    cls = _as_class(arch)
    kwargs = {**(size_kwargs(cls, size) if size is not None else {}), **overrides}
    if "seed" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # for constructors that draw from the global generator
        try:
            return cls(d_model, **kwargs)
        except TypeError as err:
            raise BackboneError(
                f"cannot construct {cls.__module__}:{cls.__qualname__} with d_model={d_model}, {kwargs}: {err}"
            ) from None


def _as_class(arch: str | type[Backbone]) -> type[Backbone]:
    cls = resolve(arch) if isinstance(arch, str) else arch
    if not isinstance(cls, type):
        raise BackboneError(f"architecture {arch!r} is neither a name, a dotted path nor a class")
    return cls
