"""Gated Slot Attention (GSA) backbone: pre-norm GSA token mixing + pre-norm SwiGLU MLP blocks.

Follows Zhang et al. 2024 ("Gated Slot Attention for Efficient Linear-Time Sequence Modeling")
and the layout of fla's `GatedSlotAttention` layer and `GSABlock` (flash-linear-attention 0.6.0);
see docs/architectures/gsa.md. The core two-pass recurrence is in `architectures.ops.gsa`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from architectures.base import BlockStack
from architectures.layers import PreNormBlock, RMSNorm, ShortConv
from architectures.ops.gsa import gsa
from bench.errors import BenchError

FEATURE_MAPS = {"swish": F.silu, "relu": F.relu}
ATTENTION_SCALE = 1.0  # fla's GSA layer reads slots with scale 1, not d_k ** -0.5
INIT_STD = 0.02  # fla's initializer_range: every projection ~ N(0, 0.02^2)


def default_mlp_hidden(d_model: int, hidden_ratio: int = 4) -> int:
    """fla's GatedMLP width: 2/3 of `hidden_ratio * d_model`, rounded up to a multiple of 256."""
    hidden = int(d_model * hidden_ratio * 2 / 3)
    return 256 * ((hidden + 255) // 256)


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
        self.convs = (
            nn.ModuleList(ShortConv(width, conv_size) for width in (d_model, self.kv_dim, self.kv_dim))
            if use_short_conv
            else None
        )
        self.out_norm = RMSNorm(d_model, eps=norm_eps)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch_size: int, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        heads, d, m = self.n_kv_heads, self.head_dim, self.n_slots
        state = (
            torch.zeros(batch_size, heads, d, m, device=device),
            torch.zeros(batch_size, heads, m, d, device=device),
        )
        if self.convs is not None:
            state += tuple(conv.init_cache(batch_size, device) for conv in self.convs)
        return state

    def state_size(self) -> int:
        size = 2 * self.n_kv_heads * self.head_dim * self.n_slots
        if self.convs is not None:
            size += sum(conv.state_size() for conv in self.convs)
        return size

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...], mode: str = "chunk"
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """x (B, L, D) -> (B, L, D); mode "chunk" (segments) or "recurrent" (single steps)."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        conv_caches: tuple[torch.Tensor, ...] = ()
        if self.convs is not None:
            (q, cache_q), (k, cache_k), (v, cache_v) = (
                conv(h, cache) for conv, h, cache in zip(self.convs, (q, k, v), state[2:])
            )
            conv_caches = (cache_q, cache_k, cache_v)
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

    preset_kwargs: ClassVar[dict[str, dict]] = {
        # 2 x 205.2K = 410.4K (+2.6 %): fla's MLP rounding (512) would not fit two layers, so 320.
        "tiny": {"n_layers": 2, "n_heads": 4, "n_slots": 32, "mlp_hidden": 320},
        # 6 x 820.0K = 4.92M (-1.6 %): 64 slots as the paper; MLP 640 instead of fla's 768 to fit six layers.
        "small": {"n_layers": 6, "n_heads": 4, "n_slots": 64, "mlp_hidden": 640},
        # 16 x 3.67M = 58.7M (-2.1 %): the paper's 64 slots at d_model 512, 8 heads, fla's MLP (1536).
        "paper": {"n_layers": 16, "n_heads": 8, "n_slots": 64},
    }

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

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """fla's initialisation: linear and convolution weights ~ N(0, 0.02^2), biases 0, norms 1."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, ShortConv)):
                module.weight.normal_(0.0, INIT_STD, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)


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
        raise BenchError(f"gsa: n_layers={n_layers}; accepted: a positive integer")
    if n_heads < 1 or d_model % n_heads:
        raise BenchError(f"gsa: n_heads={n_heads} must be positive and divide d_model={d_model}")
    if n_kv_heads < 1 or n_heads % n_kv_heads:
        raise BenchError(f"gsa: n_kv_heads={n_kv_heads} must be positive and divide n_heads={n_heads}")
    if n_slots is not None and n_slots < 1:
        raise BenchError(f"gsa: n_slots={n_slots}; accepted: a positive integer")
    if feature_map not in FEATURE_MAPS:
        raise BenchError(f"gsa: feature_map={feature_map!r}; accepted: {', '.join(FEATURE_MAPS)}")
    if conv_size < 2:
        raise BenchError(f"gsa: conv_size={conv_size}; accepted: an integer >= 2")
    if gate_logit_normalizer <= 0:
        raise BenchError(f"gsa: gate_logit_normalizer={gate_logit_normalizer}; accepted: a positive number")
    if chunk_size < 1:
        raise BenchError(f"gsa: chunk_size={chunk_size}; accepted: a positive integer")
