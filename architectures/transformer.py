"""Transformer baseline: pre-norm blocks of sliding-window causal softmax attention with rotary
positions, then a SwiGLU MLP (the Llama block layout); see docs/architectures/transformer.md.

The state is a key/value cache of the last `window` steps per layer plus a position counter, so
segment-wise training and one-step decoding give the same outputs as a single pass.
"""

from __future__ import annotations

import torch
from torch import nn

from architectures.base import Backbone, State
from architectures.errors import BackboneError
from architectures.init import init_weights
from architectures.layers import RMSNorm, SwiGLU, default_mlp_hidden
from architectures.ops.transformer import apply_rotary, rotary_inverse_frequencies, sliding_window_attention


class SlidingWindowAttention(nn.Module):
    """Multi-head attention: q, k, v projections, rotary positions on q and k, windowed causal
    softmax attention, output projection. Layer state: the (k, v) cache, each (B, H, window, d)."""

    def __init__(self, d_model: int, n_heads: int, window: int, rope_base: float, block_size: int) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.window, self.block_size = window, block_size
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)
        frequencies = rotary_inverse_frequencies(self.head_dim, rope_base)
        self.register_buffer("inverse_frequencies", frequencies, persistent=False)

    def init_cache(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        shape = (batch_size, self.n_heads, self.window, self.head_dim)
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, ...], positions: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """x (B, L, D), positions (B, L) int64 absolute step indices."""
        heads = (self.n_heads, self.head_dim)
        q, k, v = (proj(x).unflatten(-1, heads) for proj in (self.q_proj, self.k_proj, self.v_proj))
        q, k = (apply_rotary(t, positions, self.inverse_frequencies) for t in (q, k))
        o, cache = sliding_window_attention(q, k, v, cache, positions[:, 0], block_size=self.block_size)
        return self.o_proj(o.flatten(-2)), cache


class TransformerBlock(nn.Module):
    """x + Attention(RMSNorm(x)), then x + SwiGLU(RMSNorm(x))."""

    def __init__(self, d_model: int, mlp_hidden: int, norm_eps: float, **attention_kwargs) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(d_model, eps=norm_eps)
        self.attn = SlidingWindowAttention(d_model, **attention_kwargs)
        self.mlp_norm = RMSNorm(d_model, eps=norm_eps)
        self.mlp = SwiGLU(d_model, mlp_hidden)

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, ...], positions: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h, cache = self.attn(self.attn_norm(x), cache, positions)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), cache


class Transformer(Backbone):
    """`n_layers` pre-norm attention + SwiGLU blocks. Keyword arguments:

    n_heads: attention heads (head dim = d_model / n_heads, even for the rotary pairs); window:
    past steps each query sees besides itself (the cache length); mlp_hidden: SwiGLU width
    (default fla's 2/3 * 4 * d_model rounded up to 256); rope_base: rotary base (10000);
    norm_eps; block_size: queries per attention block in `forward`; seed of the initialisation.

    State: (position (B,) int64, ((k, v) per layer)), caches float32 (B, n_heads, window, head dim).
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        n_heads: int = 4,
        window: int = 512,
        mlp_hidden: int | None = None,
        rope_base: float = 10_000.0,
        norm_eps: float = 1e-6,
        block_size: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__(d_model, n_layers)
        _check_config(d_model, n_layers, n_heads, window, mlp_hidden, rope_base, block_size)
        self.window = window
        self.blocks = nn.ModuleList(
            TransformerBlock(
                d_model,
                mlp_hidden=default_mlp_hidden(d_model) if mlp_hidden is None else mlp_hidden,
                norm_eps=norm_eps,
                n_heads=n_heads,
                window=window,
                rope_base=rope_base,
                block_size=block_size,
            )
            for _ in range(n_layers)
        )
        self.reset_parameters(torch.Generator().manual_seed(seed))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Linear weights ~ N(0, 0.02^2), norm weights 1 (`init_weights`; no residual rescaling)."""
        init_weights(self, generator)

    def init_state(
        self, batch_size: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> State:
        position = torch.zeros(batch_size, dtype=torch.long, device=device)
        return position, tuple(block.attn.init_cache(batch_size, device, dtype) for block in self.blocks)

    def state_size(self) -> int:
        """Numbers in the key/value caches (the position counter is not counted)."""
        return self.n_layers * 2 * self.window * self.d_model

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise BackboneError(f"Transformer.forward: x has shape {tuple(x.shape)}; expected (B, L, {self.d_model})")
        return self._run(x, state)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 2 or x.shape[-1] != self.d_model:
            raise BackboneError(f"Transformer.step: x has shape {tuple(x.shape)}; expected (B, {self.d_model})")
        y, state = self._run(x[:, None], state)
        return y[:, 0], state

    def _run(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.init_state(x.shape[0], x.device, torch.promote_types(x.dtype, torch.float32))
        position, caches = state
        positions = position[:, None] + torch.arange(x.shape[1], device=x.device)
        new_caches = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block(x, cache, positions)
            new_caches.append(cache)
        return x, (position + x.shape[1], tuple(new_caches))


def _check_config(
    d_model: int, n_layers: int, n_heads: int, window: int, mlp_hidden: int | None, rope_base: float, block_size: int
) -> None:
    if n_layers < 1:
        raise BackboneError(f"transformer: n_layers={n_layers}; accepted: a positive integer")
    if n_heads < 1 or d_model % n_heads or (d_model // n_heads) % 2:
        raise BackboneError(f"transformer: n_heads={n_heads} must divide d_model={d_model} into an even head dim")
    if window < 1:
        raise BackboneError(f"transformer: window={window}; accepted: a positive integer")
    if mlp_hidden is not None and mlp_hidden < 1:
        raise BackboneError(f"transformer: mlp_hidden={mlp_hidden}; accepted: a positive integer")
    if rope_base <= 1:
        raise BackboneError(f"transformer: rope_base={rope_base}; accepted: a number > 1")
    if block_size < 1:
        raise BackboneError(f"transformer: block_size={block_size}; accepted: a positive integer")
