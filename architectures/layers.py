"""Small layers shared by the shipped backbones: norms, causal short convolutions, an MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * self.weight.float()).to(dtype)


class GatedRMSNorm(RMSNorm):
    """RMSNorm(x) * silu(gate): the output norm of Gated DeltaNet and Mamba2."""

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x) * F.silu(gate)


class ShortConv(nn.Module):
    """Depthwise causal 1-D convolution over time, with the last `kernel_size - 1` inputs as state.

    forward(x (B, L, C), cache (B, K-1, C) or None) -> (y (B, L, C), cache)

    The returned cache is float32 (float64 for float64 inputs), also under autocast, like the
    recurrent states of the backbones that use it.
    """

    def __init__(self, channels: int, kernel_size: int = 4, activation: bool = True) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.activation = activation
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def state_size(self) -> int:
        """Numbers in the cache per sequence: the last K - 1 inputs of every channel."""
        return (self.kernel_size - 1) * self.weight.shape[0]

    def init_cache(
        self, batch_size: int, device: torch.device | str, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        return torch.zeros(batch_size, self.kernel_size - 1, self.weight.shape[0], device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A sum of K shifted products rather than `F.conv1d`: the same numbers, but PyTorch's
        depthwise conv1d backward took most of a layer's time on a 2-core CPU."""
        if cache is None:
            cache = self.init_cache(x.shape[0], x.device, x.dtype)
        length, taps = x.shape[1], self.kernel_size
        full = torch.cat([cache.to(x.dtype), x], dim=1)  # (B, K-1+L, C)
        weight = self.weight[:, 0].to(x.dtype)  # (C, K)
        y = self.bias.to(x.dtype) + sum(full[:, k : k + length] * weight[:, k] for k in range(taps))
        if self.activation:
            y = F.silu(y)
        return y, self._cache_of(full)

    def step(self, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x (B, C), cache (B, K-1, C)."""
        full = torch.cat([cache.to(x.dtype), x[:, None]], dim=1)  # (B, K, C)
        y = torch.einsum("bkc,ck->bc", full, self.weight[:, 0].to(x.dtype)) + self.bias.to(x.dtype)
        if self.activation:
            y = F.silu(y)
        return y, self._cache_of(full)

    def _cache_of(self, full: torch.Tensor) -> torch.Tensor:
        """The last K - 1 inputs of `full` (B, T, C), in at least float32."""
        return full[:, full.shape[1] - (self.kernel_size - 1) :].to(torch.promote_types(full.dtype, torch.float32))


class ShortConvs(nn.ModuleList):
    """One `ShortConv` per input (GDN's and GSA's q, k, v), their caches kept side by side in the mixer's state."""

    def __init__(self, widths: Sequence[int], kernel_size: int) -> None:
        super().__init__(ShortConv(width, kernel_size) for width in widths)

    def init_cache(self, batch_size: int, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        return tuple(conv.init_cache(batch_size, device) for conv in self)

    def state_size(self) -> int:
        return sum(conv.state_size() for conv in self)

    def forward(  # type: ignore[override]
        self, inputs: Sequence[torch.Tensor], caches: Sequence[torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Each input through its convolution with its cache -> (outputs, new caches)."""
        results = [conv(x, cache) for conv, x, cache in zip(self, inputs, caches)]
        return tuple(y for y, _ in results), tuple(cache for _, cache in results)


def default_mlp_hidden(d_model: int, hidden_ratio: int = 4) -> int:
    """fla's GatedMLP width: 2/3 of `hidden_ratio * d_model`, rounded up to a multiple of 256."""
    hidden = int(d_model * hidden_ratio * 2 / 3)
    return 256 * ((hidden + 255) // 256)


class SwiGLU(nn.Module):
    """The gated MLP of Llama-style blocks: down(silu(gate(x)) * up(x))."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class PreNormBlock(nn.Module):
    """x + mixer(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)): the block layout of fla's models.

    The token mixer maps `(x, state, mode)` to `(y, state)` (mode "chunk" or "recurrent").
    """

    def __init__(self, d_model: int, mlp_hidden: int, norm_eps: float, mixer: nn.Module) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(d_model, eps=norm_eps)
        self.attn = mixer
        self.mlp_norm = RMSNorm(d_model, eps=norm_eps)
        self.mlp = SwiGLU(d_model, mlp_hidden)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...], mode: str = "chunk"
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h, state = self.attn(self.attn_norm(x), state, mode)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), state
