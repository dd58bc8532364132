"""Mamba2 backbone: pre-norm Mamba2 (SSD) mixer + pre-norm SwiGLU MLP blocks.

Follows Dao & Gu 2024 ("Transformers are SSMs", the SSD layer) and the layout of fla's `Mamba2`
layer and `Mamba2Block` (flash-linear-attention 0.6.0), with the feed-forward sublayer that
OmniRL's block wrapper adds around every fla Mamba2 block; see docs/architectures/mamba2.md.
The scan itself is in `architectures.ops.mamba2`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from architectures.base import BlockStack
from architectures.errors import BackboneError
from architectures.init import init_weights
from architectures.layers import RMSNorm, ShortConv, SwiGLU, default_mlp_hidden
from architectures.ops.mamba2 import resolve_kernel, ssd

DEFAULT_HEAD_DIM = 64  # mamba-ssm's and fla's headdim


class Mamba2Mixer(nn.Module):
    """One Mamba2 layer: in_proj -> (z, xBC, dt); causal depthwise conv + SiLU over xBC; the SSD
    scan with skip D; gated RMSNorm with z; out_proj. State: (ssm (B, H, P, N), conv cache
    (B, conv_size - 1, d_inner + 2 G N))."""

    def __init__(
        self,
        d_model: int,
        d_inner: int,
        n_heads: int,
        d_state: int,
        n_groups: int,
        conv_size: int,
        norm_before_gate: bool,
        norm_eps: float,
        chunk_size: int,
        kernel: str,
    ) -> None:
        super().__init__()
        self.d_inner, self.n_heads, self.head_dim = d_inner, n_heads, d_inner // n_heads
        self.d_state, self.n_groups = d_state, n_groups
        self.norm_before_gate = norm_before_gate
        self.chunk_size, self.kernel = chunk_size, kernel
        conv_dim = d_inner + 2 * n_groups * d_state
        self.in_proj = nn.Linear(d_model, d_inner + conv_dim + n_heads, bias=False)
        self.conv = ShortConv(conv_dim, conv_size, activation=True)
        self.dt_bias = nn.Parameter(torch.zeros(n_heads))
        self.A_log = nn.Parameter(torch.zeros(n_heads))
        self.D = nn.Parameter(torch.ones(n_heads))
        self.norm = RMSNorm(d_inner, eps=norm_eps)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def init_state(self, batch_size: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        ssm = torch.zeros(batch_size, self.n_heads, self.head_dim, self.d_state, device=device)
        return ssm, self.conv.init_cache(batch_size, device)

    def state_size(self) -> int:
        return self.d_inner * self.d_state + self.conv.state_size()

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], mode: str = "chunk"
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, L, D) -> (B, L, D); mode "chunk" (segments) or "recurrent" (single steps)."""
        group_width = self.n_groups * self.d_state
        z, xbc, dt = self.in_proj(x).split([self.d_inner, self.d_inner + 2 * group_width, self.n_heads], dim=-1)
        xbc, conv_cache = self.conv(xbc, state[1])
        xs, B, C = xbc.split([self.d_inner, group_width, group_width], dim=-1)
        xs = xs.unflatten(-1, (self.n_heads, self.head_dim))
        dtype = torch.promote_types(dt.dtype, torch.float32)  # step sizes and decays at least float32
        dt = F.softplus(dt.to(dtype) + self.dt_bias.to(dtype))
        A = -torch.exp(self.A_log.to(dtype))
        y, ssm = ssd(
            xs,
            dt,
            A,
            B.unflatten(-1, (self.n_groups, self.d_state)),
            C.unflatten(-1, (self.n_groups, self.d_state)),
            state[0],
            mode=mode,
            chunk_size=self.chunk_size,
            kernel=self.kernel,
        )
        y = (y + xs * self.D.to(xs.dtype).unsqueeze(-1)).flatten(-2)
        if self.norm_before_gate:
            y = self.norm(y) * F.silu(z)
        else:  # fla's and mamba-ssm's default: normalise the gated output
            y = self.norm(y * F.silu(z))
        return self.out_proj(y), (ssm, conv_cache)


class Mamba2Block(nn.Module):
    """x + Mamba2(RMSNorm(x)) as fla's Mamba2Block, then x + SwiGLU(RMSNorm(x)) when mlp_hidden > 0."""

    def __init__(self, d_model: int, mlp_hidden: int, norm_eps: float, **mixer_kwargs) -> None:
        super().__init__()
        self.mixer_norm = RMSNorm(d_model, eps=norm_eps)
        self.mixer = Mamba2Mixer(d_model, norm_eps=norm_eps, **mixer_kwargs)
        self.mlp_norm = RMSNorm(d_model, eps=norm_eps) if mlp_hidden else None
        self.mlp = SwiGLU(d_model, mlp_hidden) if mlp_hidden else None

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], mode: str = "chunk"
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, state = self.mixer(self.mixer_norm(x), state, mode)
        x = x + h
        if self.mlp is not None:
            x = x + self.mlp(self.mlp_norm(x))
        return x, state


class Mamba2(BlockStack):
    """`n_layers` Mamba2 blocks. Keyword arguments (fla's / mamba-ssm's names in brackets):

    expand [expand]: d_inner = expand * d_model (2); head_dim [head_dim / headdim]: width P of a
    head (64), or n_heads [num_heads]: heads H, then P = d_inner / H (give one of the two);
    d_state [state_size / d_state]: N (128); n_groups [n_groups / ngroups]: groups sharing B and
    C (1); conv_size [conv_kernel / d_conv] (4); mlp_hidden: SwiGLU width after each mixer
    (default fla's 2/3 * 4 * d_model rounded up to 256; 0: no MLP, as fla's Mamba2Model);
    norm_before_gate: RMSNorm(y) * silu(z) instead of the reference RMSNorm(y * silu(z)) (False);
    dt_min, dt_max, dt_init_floor: the range of the initial step sizes (0.001, 0.1, 1e-4);
    A_init_range: -A drawn uniformly from it (1, 16); norm_eps (1e-5); chunk_size of the PyTorch
    chunked scan (64); kernel: what runs the scan on CUDA tensors, "fla" (fla's Triton kernels when
    fla imports, else PyTorch), "torch" (the PyTorch forms) or "mamba_ssm" (mamba-ssm's SSD kernel for
    segments; a BackboneError here where it cannot run: no CUDA GPU, or mamba-ssm not installed); CPU
    tensors always take the PyTorch forms; use_fla=False is kernel="torch" (the switch every fla
    backbone has); seed of the weight initialisation. No kernel changes parameters or initialisation.
    """

    mixer_attr = "mixer"

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        expand: int = 2,
        head_dim: int | None = None,
        n_heads: int | None = None,
        d_state: int = 128,
        n_groups: int = 1,
        conv_size: int = 4,
        mlp_hidden: int | None = None,
        norm_before_gate: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        norm_eps: float = 1e-5,
        chunk_size: int = 64,
        use_fla: bool = True,
        kernel: str = "fla",
        seed: int = 0,
    ) -> None:
        super().__init__(d_model, n_layers)
        kernel = resolve_kernel(kernel, use_fla)
        if expand < 1:
            raise BackboneError(f"mamba2: expand={expand}; accepted: a positive integer")
        d_inner = expand * d_model
        n_heads = _resolve_heads(d_inner, head_dim, n_heads)
        mlp_hidden = default_mlp_hidden(d_model) if mlp_hidden is None else mlp_hidden
        _check_config(
            n_layers,
            n_heads,
            d_state,
            n_groups,
            conv_size,
            mlp_hidden,
            dt_min,
            dt_max,
            dt_init_floor,
            A_init_range,
            chunk_size,
        )
        self.dt_range = (dt_min, dt_max, dt_init_floor)
        self.A_init_range = A_init_range
        self.blocks = nn.ModuleList(
            Mamba2Block(
                d_model,
                mlp_hidden=mlp_hidden,
                norm_eps=norm_eps,
                d_inner=d_inner,
                n_heads=n_heads,
                d_state=d_state,
                n_groups=n_groups,
                conv_size=conv_size,
                norm_before_gate=norm_before_gate,
                chunk_size=chunk_size,
                kernel=kernel,
            )
            for _ in range(n_layers)
        )
        self.reset_parameters(torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """fla's Mamba2 initialisation: `init_weights`, then out_proj re-drawn as PyTorch's default
        (U(+-1/sqrt(d_inner))) scaled by 1/sqrt(n_layers); D = 1; -A ~ U(A_init_range); dt =
        softplus(dt_bias) log-uniform in [dt_min, dt_max], floored at dt_init_floor."""
        init_weights(self, generator)
        dt_min, dt_max, dt_floor = self.dt_range
        for block in self.blocks:
            mixer = block.mixer
            bound = 1.0 / math.sqrt(mixer.d_inner) / math.sqrt(self.n_layers)
            mixer.out_proj.weight.uniform_(-bound, bound, generator=generator)
            mixer.D.fill_(1.0)
            low, high = self.A_init_range
            mixer.A_log.copy_(torch.empty(mixer.n_heads).uniform_(low, high, generator=generator).log())
            u = torch.rand(mixer.n_heads, generator=generator)
            dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_floor)
            mixer.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus


def _resolve_heads(d_inner: int, head_dim: int | None, n_heads: int | None) -> int:
    """Heads from either the head width or the head count (not both unless they agree)."""
    if n_heads is None:
        head_dim = DEFAULT_HEAD_DIM if head_dim is None else head_dim
        if head_dim < 1 or d_inner % head_dim:
            raise BackboneError(f"mamba2: head_dim={head_dim} must be positive and divide d_inner={d_inner}")
        return d_inner // head_dim
    if n_heads < 1 or d_inner % n_heads:
        raise BackboneError(f"mamba2: n_heads={n_heads} must be positive and divide d_inner={d_inner}")
    if head_dim is not None and head_dim * n_heads != d_inner:
        raise BackboneError(
            f"mamba2: head_dim={head_dim} and n_heads={n_heads} disagree with d_inner={d_inner}; give one of them"
        )
    return n_heads


def _check_config(
    n_layers: int,
    n_heads: int,
    d_state: int,
    n_groups: int,
    conv_size: int,
    mlp_hidden: int,
    dt_min: float,
    dt_max: float,
    dt_init_floor: float,
    A_init_range: tuple[float, float],
    chunk_size: int,
) -> None:
    if n_layers < 1:
        raise BackboneError(f"mamba2: n_layers={n_layers}; accepted: a positive integer")
    if d_state < 1:
        raise BackboneError(f"mamba2: d_state={d_state}; accepted: a positive integer")
    if n_groups < 1 or n_heads % n_groups:
        raise BackboneError(f"mamba2: n_groups={n_groups} must be positive and divide the {n_heads} heads")
    if conv_size < 2:
        raise BackboneError(f"mamba2: conv_size={conv_size}; accepted: an integer >= 2")
    if mlp_hidden < 0:
        raise BackboneError(f"mamba2: mlp_hidden={mlp_hidden}; accepted: 0 (no MLP) or a positive integer")
    if not 0 < dt_min <= dt_max or dt_init_floor <= 0:
        raise BackboneError(
            f"mamba2: dt_min={dt_min}, dt_max={dt_max}, dt_init_floor={dt_init_floor}; "
            "accepted: 0 < dt_min <= dt_max and dt_init_floor > 0"
        )
    if len(A_init_range) != 2 or not 0 < A_init_range[0] <= A_init_range[1]:
        raise BackboneError(f"mamba2: A_init_range={A_init_range}; accepted: (low, high) with 0 < low <= high")
    if chunk_size < 1:
        raise BackboneError(f"mamba2: chunk_size={chunk_size}; accepted: a positive integer")
