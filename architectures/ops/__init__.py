"""The core recurrences of the shipped backbones in PyTorch, with fla's Triton kernels as an option."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable


@functools.cache
def load_fla(module: str, *names: str) -> tuple[Callable, ...] | None:
    """The functions `names` of fla's `module` (e.g. "fla.ops.gsa"), or None where fla or triton does
    not import: fla is optional, and anything that stops its import means "use the PyTorch forms".
    mamba2 loads mamba-ssm's kernel through it too (`architectures.ops.mamba2.MAMBA_SSM_KERNEL`)."""
    try:
        loaded = importlib.import_module(module)
        return tuple(getattr(loaded, name) for name in names)
    except Exception:
        return None
