"""Gated Slot Attention (GSA) backbone: pre-norm GSA token mixing + pre-norm SwiGLU MLP blocks.

Follows Zhang et al. 2024 ("Gated Slot Attention for Efficient Linear-Time Sequence Modeling")
and the layout of fla's `GatedSlotAttention` layer and `GSABlock` (flash-linear-attention 0.6.0);
see docs/architectures/gsa.md. The core two-pass recurrence is in `architectures.ops.gsa`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from architectures.base import BlockStack
from architectures.errors import BackboneError
from architectures.init import init_weights
from architectures.layers import PreNormBlock, RMSNorm, ShortConvs, default_mlp_hidden
from architectures.ops.gsa import gsa

FEATURE_MAPS = {"swish": F.silu, "relu": F.relu}
ATTENTION_SCALE = 1.0  # fla's GSA layer reads slots with scale 1, not d_k ** -0.5


class GSATokenMixer(nn.Module):
    """One GSA layer: projections, optional short convolutions, the two-pass slot recurrence,
    then o_proj(RMSNorm(silu(o))). State: (Hk (B, H_kv, d_k, m), Hv (B, H_kv, m, d_v)) plus the
    q/k/v convolution caches when short convolutions are on."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        n_slots: int,
        feature_map: str,
        use_short_conv: bool,
        conv_size: int,
        gate_logit_normalizer: float,
        norm_eps: float,
        chunk_size: int,
        use_fla: bool,
    ) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.n_slots = n_heads, n_kv_heads, n_slots
        self.head_dim = d_model // n_heads
        self.kv_dim = n_kv_heads * self.head_dim
        self.feature_map = FEATURE_MAPS[feature_map]
        self.gate_logit_normalizer = gate_logit_normalizer
        self.chunk_size, self.use_fla = chunk_size, use_fla
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, self.kv_dim, bias=False)
        self.v_proj = nn.Linear(d_model, self.kv_dim, bias=False)
        self.f_proj = nn.Linear(d_model, n_kv_heads * n_slots, bias=False)
        self.convs = ShortConvs((d_model, self.kv_dim, self.kv_dim), conv_size) if use_short_conv else None
        self.out_norm = RMSNorm(d_model, eps=norm_eps)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch_size: int, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        heads, d, m = self.n_kv_heads, self.head_dim, self.n_slots
        state = (
            torch.zeros(batch_size, heads, d, m, device=device),
            torch.zeros(batch_size, heads, m, d, device=device),
        )
        if self.convs is not None:
            state += self.convs.init_cache(batch_size, device)
        return state

    def state_size(self) -> int:
        size = 2 * self.n_kv_heads * self.head_dim * self.n_slots
        if self.convs is not None:
            size += self.convs.state_size()
        return size

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...], mode: str = "chunk"
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """x (B, L, D) -> (B, L, D); mode "chunk" (segments) or "recurrent" (single steps)."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        conv_caches: tuple[torch.Tensor, ...] = ()
        if self.convs is not None:
            (q, k, v), conv_caches = self.convs((q, k, v), state[2:])
        q = self.feature_map(q.unflatten(-1, (self.n_heads, self.head_dim)))
        k = self.feature_map(k.unflatten(-1, (self.n_kv_heads, self.head_dim)))
        v = F.silu(v.unflatten(-1, (self.n_kv_heads, self.head_dim)))
        # Forget gate alpha = sigmoid(f) ** (1 / tau) in log space; writes s = 1 - alpha.
        g = F.logsigmoid(self.f_proj(x).float().unflatten(-1, (self.n_kv_heads, self.n_slots)))
        g = g / self.gate_logit_normalizer
        s = -torch.expm1(g)
        o, (hk, hv) = gsa(
            q, k, v, s, g, ATTENTION_SCALE, state[:2], mode=mode, chunk_size=self.chunk_size, use_fla=self.use_fla
        )
        y = self.o_proj(self.out_norm(F.silu(o.flatten(-2))))
        return y, (hk, hv) + conv_caches


class GSABlock(PreNormBlock):
    """x + GSA(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)), as fla's GSABlock."""

    def __init__(self, d_model: int, mlp_hidden: int, norm_eps: float, **mixer_kwargs) -> None:
        super().__init__(d_model, mlp_hidden, norm_eps, GSATokenMixer(d_model, norm_eps=norm_eps, **mixer_kwargs))


class GatedSlotAttention(BlockStack):
    """`n_layers` GSA blocks. Keyword arguments (fla's names in brackets):

    n_heads [num_heads]: query heads (head dim = d_model / n_heads); n_kv_heads [num_kv_heads]:
    key/value/gate heads shared by groups of query heads (default n_heads); n_slots [num_slots]:
    memory slots per head (default: the head dim, as fla's layer); feature_map: "swish" or "relu"
    on q and k; use_short_conv / conv_size: causal depthwise convolutions on q, k, v (off, as in
    fla); gate_logit_normalizer: tau in alpha = sigmoid(f) ** (1 / tau) (8); mlp_hidden: SwiGLU
    width (default fla's 2/3 * 4 * d_model rounded up to 256); norm_eps; chunk_size of the
    PyTorch chunked form; use_fla: use fla's Triton kernels on CUDA when importable; seed of the
    weight initialisation.
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        n_heads: int = 4,
        n_kv_heads: int | None = None,
        n_slots: int | None = None,
        feature_map: str = "swish",
        use_short_conv: bool = False,
        conv_size: int = 4,
        gate_logit_normalizer: float = 8.0,
        mlp_hidden: int | None = None,
        norm_eps: float = 1e-6,
        chunk_size: int = 16,
        use_fla: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(d_model, n_layers)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        _check_config(
            d_model, n_layers, n_heads, n_kv_heads, n_slots, feature_map, conv_size, gate_logit_normalizer, chunk_size
        )
        self.blocks = nn.ModuleList(
            GSABlock(
                d_model,
                mlp_hidden=default_mlp_hidden(d_model) if mlp_hidden is None else mlp_hidden,
                norm_eps=norm_eps,
                n_heads=n_heads,
                n_kv_heads=n_kv_heads,
                n_slots=d_model // n_heads if n_slots is None else n_slots,
                feature_map=feature_map,
                use_short_conv=use_short_conv,
                conv_size=conv_size,
                gate_logit_normalizer=gate_logit_normalizer,
                chunk_size=chunk_size,
                use_fla=use_fla,
            )
            for _ in range(n_layers)
        )
        self.reset_parameters(torch.Generator().manual_seed(seed))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """fla's initialisation (`init_weights`)."""
        init_weights(self, generator)


def _check_config(
    d_model: int,
    n_layers: int,
    n_heads: int,
    n_kv_heads: int,
    n_slots: int | None,
    feature_map: str,
    conv_size: int,
    gate_logit_normalizer: float,
    chunk_size: int,
) -> None:
    if n_layers < 1:
        raise BackboneError(f"gsa: n_layers={n_layers}; accepted: a positive integer")
    if n_heads < 1 or d_model % n_heads:
        raise BackboneError(f"gsa: n_heads={n_heads} must be positive and divide d_model={d_model}")
    if n_kv_heads < 1 or n_heads % n_kv_heads:
        raise BackboneError(f"gsa: n_kv_heads={n_kv_heads} must be positive and divide n_heads={n_heads}")
    if n_slots is not None and n_slots < 1:
        raise BackboneError(f"gsa: n_slots={n_slots}; accepted: a positive integer")
    if feature_map not in FEATURE_MAPS:
        raise BackboneError(f"gsa: feature_map={feature_map!r}; accepted: {', '.join(FEATURE_MAPS)}")
    if conv_size < 2:
        raise BackboneError(f"gsa: conv_size={conv_size}; accepted: an integer >= 2")
    if gate_logit_normalizer <= 0:
        raise BackboneError(f"gsa: gate_logit_normalizer={gate_logit_normalizer}; accepted: a positive number")
    if chunk_size < 1:
        raise BackboneError(f"gsa: chunk_size={chunk_size}; accepted: a positive integer")
