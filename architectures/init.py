"""The weight initialisation shared by the shipped backbones (fla's, with initializer_range 0.02)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from architectures.layers import RMSNorm, ShortConv

INIT_STD = 0.02
"""fla's and Llama's initializer_range: linear and short-convolution weights ~ N(0, INIT_STD^2)."""


@torch.no_grad()
def init_weights(root: nn.Module, generator: torch.Generator, other: Callable[[nn.Module], None] | None = None) -> None:
    """Linear and short-convolution weights ~ N(0, INIT_STD^2), their biases 0, RMSNorm weights 1.

    `other(module)` is called on every other module of the same pre-order walk, so that a backbone's
    own draws (GDN's decays, the LSTM's weights) take their turn on `generator` in module order:
    drawing them afterwards would change every weight."""
    for module in root.modules():
        if isinstance(module, (nn.Linear, ShortConv)):
            module.weight.normal_(0.0, INIT_STD, generator=generator)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, RMSNorm):
            module.weight.fill_(1.0)
        elif other is not None:
            other(module)
