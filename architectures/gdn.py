"""Gated DeltaNet (GDN) backbone: pre-norm Gated DeltaNet token mixing + pre-norm SwiGLU MLP blocks.

Follows Yang et al. 2024/2025 ("Gated Delta Networks: Improving Mamba2 with Delta Rule") and the
layout of fla's `GatedDeltaNet` layer and `GatedDeltaNetBlock` (flash-linear-attention 0.6.0);
see docs/architectures/gdn.md. The core recurrence is in `architectures.ops.gdn`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from architectures.base import BlockStack
from architectures.errors import BackboneError
from architectures.init import init_weights
from architectures.layers import GatedRMSNorm, PreNormBlock, RMSNorm, ShortConvs, default_mlp_hidden
from architectures.ops.gdn import gated_delta_rule

L2_NORM_EPS = 1e-6  # fla's l2norm: x / sqrt(sum(x^2) + eps)
A_INIT_RANGE = (0.0, 16.0)  # fla: A ~ U(0, 16), A_log = log(A)
DT_INIT_RANGE = (1e-3, 1e-1)  # fla: dt log-uniform in [0.001, 0.1], floored at 1e-4
DT_INIT_FLOOR = 1e-4


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dimension, in at least float32."""
    wide = x.to(torch.promote_types(x.dtype, torch.float32))
    return (wide * torch.rsqrt(wide.pow(2).sum(-1, keepdim=True) + L2_NORM_EPS)).to(x.dtype)


class GatedDeltaNetMixer(nn.Module):
    """One Gated DeltaNet layer: q/k/v projections with short convolutions + SiLU, L2-normalised
    q and k, beta = sigmoid(b_proj x), decay g = -exp(A_log) softplus(a_proj x + dt_bias), the
    gated delta rule, then o_proj(RMSNorm(o) * silu(g_proj x)) per head.
    State: (S (B, H, d_k, d_v),) plus the q/k/v convolution caches when short convolutions are on."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        head_dim: int,
        expand_v: float,
        use_short_conv: bool,
        conv_size: int,
        use_gate: bool,
        allow_neg_eigval: bool,
        norm_eps: float,
        chunk_size: int,
        use_fla: bool,
    ) -> None:
        super().__init__()
        self.n_heads, self.head_k_dim = n_heads, head_dim
        self.head_v_dim = round(head_dim * expand_v)
        self.key_dim, self.value_dim = n_heads * head_dim, n_heads * self.head_v_dim
        self.allow_neg_eigval = allow_neg_eigval
        self.chunk_size, self.use_fla = chunk_size, use_fla
        self.q_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.a_proj = nn.Linear(d_model, n_heads, bias=False)
        self.b_proj = nn.Linear(d_model, n_heads, bias=False)
        self.A_log = nn.Parameter(torch.zeros(n_heads))
        self.dt_bias = nn.Parameter(torch.zeros(n_heads))
        self.convs = ShortConvs((self.key_dim, self.key_dim, self.value_dim), conv_size) if use_short_conv else None
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False) if use_gate else None
        norm = GatedRMSNorm if use_gate else RMSNorm
        self.o_norm = norm(self.head_v_dim, eps=norm_eps)
        self.o_proj = nn.Linear(self.value_dim, d_model, bias=False)

    @torch.no_grad()
    def reset_decay(self, generator: torch.Generator) -> None:
        """fla's initialisation of A (U(0, 16)) and of dt_bias = softplus^-1(dt), dt log-uniform."""
        a = torch.empty(self.n_heads).uniform_(*A_INIT_RANGE, generator=generator)
        self.A_log.copy_(a.log())
        low, high = (math.log(x) for x in DT_INIT_RANGE)
        dt = (torch.rand(self.n_heads, generator=generator) * (high - low) + low).exp().clamp(min=DT_INIT_FLOOR)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def init_state(self, batch_size: int, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        state = (torch.zeros(batch_size, self.n_heads, self.head_k_dim, self.head_v_dim, device=device),)
        if self.convs is not None:
            state += self.convs.init_cache(batch_size, device)
        return state

    def state_size(self) -> int:
        size = self.n_heads * self.head_k_dim * self.head_v_dim
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
            (q, k, v), conv_caches = self.convs((q, k, v), state[1:])
        else:
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        q = l2_normalize(q.unflatten(-1, (self.n_heads, self.head_k_dim)))
        k = l2_normalize(k.unflatten(-1, (self.n_heads, self.head_k_dim)))
        v = v.unflatten(-1, (self.n_heads, self.head_v_dim))
        dtype = torch.promote_types(x.dtype, torch.float32)  # gates in float32 (float64 if given float64)
        beta = self.b_proj(x).to(dtype).sigmoid()
        if self.allow_neg_eigval:
            beta = 2 * beta
        g = -self.A_log.to(dtype).exp() * F.softplus(self.a_proj(x).to(dtype) + self.dt_bias.to(dtype))
        o, recurrent = gated_delta_rule(
            q, k, v, g, beta, initial_state=state[0], mode=mode, chunk_size=self.chunk_size, use_fla=self.use_fla
        )
        if self.g_proj is not None:
            o = self.o_norm(o, self.g_proj(x).unflatten(-1, (self.n_heads, self.head_v_dim)))
        else:
            o = self.o_norm(o)
        return self.o_proj(o.flatten(-2).to(x.dtype)), (recurrent,) + conv_caches


class GatedDeltaNetBlock(PreNormBlock):
    """x + GDN(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)), as fla's GatedDeltaNetBlock."""

    def __init__(self, d_model: int, mlp_hidden: int, norm_eps: float, **mixer_kwargs) -> None:
        super().__init__(d_model, mlp_hidden, norm_eps, GatedDeltaNetMixer(d_model, norm_eps=norm_eps, **mixer_kwargs))


class GatedDeltaNet(BlockStack):
    """`n_layers` Gated DeltaNet blocks. Keyword arguments (fla's names in brackets):

    n_heads [num_heads]; head_dim [head_dim]: key/query width per head (default 0.75 * d_model /
    n_heads, fla's rule num_heads * head_dim = 0.75 * hidden_size); expand_v [expand_v]: value
    head width = expand_v * head_dim (2); use_short_conv / conv_size: causal depthwise
    convolutions + SiLU on q, k, v (on, 4); use_gate [use_gate]: output gate silu(g_proj x) with
    a gated RMSNorm (on); allow_neg_eigval: beta in (0, 2) (off); mlp_hidden [intermediate_size]:
    SwiGLU width (default fla's 2/3 * 4 * d_model rounded up to 256); norm_eps (1e-6);
    chunk_size of the PyTorch chunked form; use_fla: use fla's Triton kernels on CUDA when
    importable; seed of the weight initialisation.
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        n_heads: int = 4,
        head_dim: int | None = None,
        expand_v: float = 2.0,
        use_short_conv: bool = True,
        conv_size: int = 4,
        use_gate: bool = True,
        allow_neg_eigval: bool = False,
        mlp_hidden: int | None = None,
        norm_eps: float = 1e-6,
        chunk_size: int = 64,
        use_fla: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(d_model, n_layers)
        if n_heads < 1:
            raise BackboneError(f"gdn: n_heads={n_heads}; accepted: a positive integer")
        head_dim = int(0.75 * d_model) // n_heads if head_dim is None else head_dim
        _check_config(n_layers, n_heads, head_dim, expand_v, conv_size, mlp_hidden, chunk_size)
        self.blocks = nn.ModuleList(
            GatedDeltaNetBlock(
                d_model,
                mlp_hidden=default_mlp_hidden(d_model) if mlp_hidden is None else mlp_hidden,
                norm_eps=norm_eps,
                n_heads=n_heads,
                head_dim=head_dim,
                expand_v=expand_v,
                use_short_conv=use_short_conv,
                conv_size=conv_size,
                use_gate=use_gate,
                allow_neg_eigval=allow_neg_eigval,
                chunk_size=chunk_size,
                use_fla=use_fla,
            )
            for _ in range(n_layers)
        )
        self.reset_parameters(torch.Generator().manual_seed(seed))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """fla's initialisation (`init_weights`), with A_log and dt_bias as fla's GatedDeltaNet layer."""

        def reset_decay(module: nn.Module) -> None:
            if isinstance(module, GatedDeltaNetMixer):
                module.reset_decay(generator)

        init_weights(self, generator, reset_decay)


def _check_config(
    n_layers: int,
    n_heads: int,
    head_dim: int,
    expand_v: float,
    conv_size: int,
    mlp_hidden: int | None,
    chunk_size: int,
) -> None:
    if n_layers < 1:
        raise BackboneError(f"gdn: n_layers={n_layers}; accepted: a positive integer")
    if head_dim < 1:
        raise BackboneError(
            f"gdn: head_dim={head_dim}; accepted: a positive integer (default 0.75 * d_model / n_heads)"
        )
    if expand_v <= 0 or not math.isclose(head_dim * expand_v, round(head_dim * expand_v)):
        raise BackboneError(
            f"gdn: expand_v={expand_v}; accepted: a positive number making head_dim * expand_v "
            f"(head_dim={head_dim}) an integer"
        )
    if conv_size < 2:
        raise BackboneError(f"gdn: conv_size={conv_size}; accepted: an integer >= 2")
    if mlp_hidden is not None and mlp_hidden < 1:
        raise BackboneError(f"gdn: mlp_hidden={mlp_hidden}; accepted: a positive integer")
    if chunk_size < 1:
        raise BackboneError(f"gdn: chunk_size={chunk_size}; accepted: a positive integer")
