"""RWKV-7 ("Goose") backbone: pre-norm time-mix + pre-norm channel-mix blocks.

Follows Peng et al. 2025 ("RWKV-7 'Goose' with Expressive Dynamic State Evolution") and the layout
of fla's `RWKV7Attention` layer, `RWKV7FeedForward` and `RWKV7Block` (flash-linear-attention 0.6.0),
with the initialisation of the reference RWKV-LM v7 code as fla reproduces it; see
docs/architectures/rwkv7.md. The state update (generalized delta rule) is in `architectures.ops.rwkv7`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from architectures.base import BlockStack, State
from architectures.errors import BackboneError
from architectures.ops.rwkv7 import rwkv7

# log w = -exp(-0.5) * sigmoid(.): RWKV-7's soft clamp w = exp(-exp(-softplus(-x) - 0.5)), rewritten.
LOG_DECAY_SCALE = math.exp(-0.5)
ATTENTION_SCALE = 1.0  # RWKV-7 reads the state with r as is (no d_k ** -0.5)
LayerState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (time-mix shift, wkv state, channel-mix shift)


def default_low_rank_dims(d_model: int, head_dim: int) -> dict[str, int]:
    """fla's RWKV7Attention rule for the LoRA widths (multiples of 32, at least 32)."""

    def width(coefficient: float, factor: float) -> int:
        return max(32, int(round(coefficient * d_model**0.5 * factor / 32) * 32))

    factor = head_dim / 64
    return {
        "decay_low_rank_dim": width(2.5, factor),
        "a_low_rank_dim": width(2.5, factor),
        "v_low_rank_dim": width(1.7, factor),
        "gate_low_rank_dim": width(5.0, 1.0),
    }


class LowRank(nn.Module):
    """up(activation(down(x))): the LoRA-style projections of RWKV-7 (fla's `LoRA`)."""

    ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "none": lambda x: x}

    def __init__(self, d_in: int, d_out: int, rank: int, activation: str, bias: bool = True) -> None:
        super().__init__()
        self.down = nn.Linear(d_in, rank, bias=False)
        self.up = nn.Linear(rank, d_out, bias=bias)
        self.activation = self.ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.activation(self.down(x)))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator, bias: torch.Tensor | None = None) -> None:
        """RWKV-7's LoRA init: down = 0, up orthogonal with gain 0.1, bias as given (else 0)."""
        self.down.weight.zero_()
        d_out, rank = self.up.weight.shape
        gain = math.sqrt(rank / d_out) if rank > d_out else 1.0
        nn.init.orthogonal_(self.up.weight, gain=0.1 * gain, generator=generator)
        if self.up.bias is not None:
            self.up.bias.copy_(torch.zeros(d_out) if bias is None else bias)


def shift_delta(x: torch.Tensor, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token shift: (x_{t-1} - x_t, with x_0 = `last` (B, D)), and the new `last` = x of the final step."""
    previous = torch.cat([last.to(x.dtype).unsqueeze(1), x[:, :-1]], dim=1)
    return previous - x, x[:, -1]


class RWKV7TimeMix(nn.Module):
    """One RWKV-7 time-mix (attention) layer, as fla's RWKV7Attention.

    forward(x (B, L, D), (shift (B, D), wkv (B, H, d, d)), v_first) -> (y, (shift, wkv), v_first);
    v_first is the value of layer 0 at the same tokens (value residual), not state.
    """

    MIX_NAMES = ("r", "w", "k", "v", "a", "g")

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        layer_index: int,
        decay_low_rank_dim: int,
        a_low_rank_dim: int,
        v_low_rank_dim: int,
        gate_low_rank_dim: int,
        norm_eps: float,
        chunk_size: int,
        use_fla: bool,
    ) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.layer_index = n_heads, d_model // n_heads, layer_index
        self.chunk_size, self.use_fla = chunk_size, use_fla
        self.mix = nn.ParameterDict({name: nn.Parameter(torch.zeros(d_model)) for name in self.MIX_NAMES})
        self.k_k = nn.Parameter(torch.zeros(d_model))
        self.k_a = nn.Parameter(torch.zeros(d_model))
        self.r_k = nn.Parameter(torch.zeros(n_heads, self.head_dim))
        self.r_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d_model, d_model, bias=False) for _ in range(4))
        self.w_lora = LowRank(d_model, d_model, decay_low_rank_dim, "tanh")
        self.a_lora = LowRank(d_model, d_model, a_low_rank_dim, "none")
        self.v_lora = LowRank(d_model, d_model, v_low_rank_dim, "none") if layer_index > 0 else None
        self.g_lora = LowRank(d_model, d_model, gate_low_rank_dim, "sigmoid", bias=False)
        self.g_norm = nn.GroupNorm(n_heads, d_model, eps=self.head_dim * norm_eps)

    def init_state(self, batch_size: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        d_model = self.n_heads * self.head_dim
        return (
            torch.zeros(batch_size, d_model, device=device),
            torch.zeros(batch_size, self.n_heads, self.head_dim, self.head_dim, device=device),
        )

    def forward(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        v_first: torch.Tensor | None,
        mode: str = "chunk",
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        batch, length, d_model = x.shape
        delta, last = shift_delta(x, state[0])
        xr, xw, xk, xv, xa, xg = (x + delta * self.mix[name] for name in self.MIX_NAMES)

        r = self.r_proj(xr)
        log_w = -LOG_DECAY_SCALE * torch.sigmoid(self.w_lora(xw).float())
        k = self.k_proj(xk)
        v = self.v_proj(xv)
        if self.v_lora is None:
            v_first = v
        else:  # value residual: lerp towards layer 0's value
            v = v + (v_first.to(v.dtype) - v) * torch.sigmoid(self.v_lora(xv))
        a = torch.sigmoid(self.a_lora(xa))  # in-context learning rate
        g = self.g_lora(xg)

        heads = (self.n_heads, self.head_dim)
        kk = F.normalize((k * self.k_k).unflatten(-1, heads), dim=-1)
        k = k * (1 + (a - 1) * self.k_a)
        r, log_w, k, v, a = (t.unflatten(-1, heads) for t in (r, log_w, k, v, a))
        o, wkv = rwkv7(
            r,
            log_w,
            k,
            v,
            -kk,
            kk * a,
            ATTENTION_SCALE,
            state[1],
            mode=mode,
            chunk_size=self.chunk_size,
            use_fla=self.use_fla,
        )
        o = self.g_norm(o.reshape(batch * length, d_model)).view(batch, length, d_model)
        bonus = ((r * k * self.r_k).sum(-1, keepdim=True) * v).flatten(-2)  # the current token's own term
        y = self.o_proj((o + bonus) * g)
        return y, (last, wkv), v_first

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator, n_layers: int) -> None:
        """RWKV-LM v7's TimeMix init (as fla's RWKV7Attention._initialize_weights)."""
        d_model, head_dim, i = self.n_heads * self.head_dim, self.head_dim, self.layer_index
        ratio_0_to_1 = i / (n_layers - 1) if n_layers > 1 else 0.0
        ratio_1_to_almost0 = 1.0 - i / n_layers
        n = torch.arange(d_model, dtype=torch.float64)
        ddd = n / d_model
        linear = n / (d_model - 1) - 0.5
        zigzag = ((n % head_dim) - (head_dim - 1) / 2) / ((head_dim - 1) / 2)
        zigzag = zigzag * zigzag.abs()
        www = -6 + 6 * (n / (d_model - 1)) ** (1 + ratio_0_to_1**0.3)
        exponents = {"r": 0.2, "w": 0.9, "k": 0.7, "v": 0.7, "a": 0.9, "g": 0.2}
        for name, exponent in exponents.items():
            self.mix[name].copy_(1.0 - ddd ** (exponent * ratio_1_to_almost0))
        self.k_k.copy_(0.71 - linear * 0.1)
        self.k_a.fill_(1.02)
        self.r_k.fill_(-0.04)
        self.w_lora.reset_parameters(generator, www + 0.5 + zigzag * 2.5)
        self.a_lora.reset_parameters(generator, -0.19 + zigzag * 0.3 + linear * 0.4)
        if self.v_lora is not None:
            self.v_lora.reset_parameters(generator, 0.73 - linear * 0.4)
        self.g_lora.reset_parameters(generator)
        self.g_norm.weight.fill_(((i + 1) / n_layers) ** 0.7)
        self.g_norm.bias.zero_()
        nn.init.orthogonal_(self.r_proj.weight, gain=1.0, generator=generator)
        nn.init.orthogonal_(self.k_proj.weight, gain=0.1, generator=generator)
        nn.init.orthogonal_(self.v_proj.weight, gain=1.0, generator=generator)
        self.o_proj.weight.zero_()


class RWKV7ChannelMix(nn.Module):
    """value(relu(key(x + shift * x_k))^2), as fla's RWKV7FeedForward; state: the last input (B, D)."""

    def __init__(self, d_model: int, hidden: int, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.x_k = nn.Parameter(torch.zeros(d_model))
        self.key = nn.Linear(d_model, hidden, bias=False)
        self.value = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta, last = shift_delta(x, last)
        return self.value(F.relu(self.key(x + delta * self.x_k)).square()), last

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator, n_layers: int) -> None:
        """RWKV-LM v7's ChannelMix init: x_k from the layer depth, key orthogonal, value 0."""
        d_model = self.x_k.shape[0]
        ddd = torch.arange(d_model, dtype=torch.float64) / d_model
        self.x_k.copy_(1.0 - ddd ** ((1.0 - self.layer_index / n_layers) ** 4))
        nn.init.orthogonal_(self.key.weight, gain=1.0, generator=generator)
        self.value.weight.zero_()


class RWKV7Block(nn.Module):
    """[x = LN0(x) on layer 0], x + TimeMix(LN(x)), then x + ChannelMix(LN(x)), as fla's RWKV7Block."""

    def __init__(self, d_model: int, layer_index: int, ffn_hidden: int, norm_eps: float, **time_mix_kwargs) -> None:
        super().__init__()
        self.pre_norm = nn.LayerNorm(d_model, eps=norm_eps) if layer_index == 0 else None
        self.attn_norm = nn.LayerNorm(d_model, eps=norm_eps)
        self.attn = RWKV7TimeMix(d_model, layer_index=layer_index, norm_eps=norm_eps, **time_mix_kwargs)
        self.ffn_norm = nn.LayerNorm(d_model, eps=norm_eps)
        self.ffn = RWKV7ChannelMix(d_model, ffn_hidden, layer_index)

    def forward(
        self, x: torch.Tensor, state: LayerState, v_first: torch.Tensor | None, mode: str
    ) -> tuple[torch.Tensor, LayerState, torch.Tensor]:
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        h, (attn_last, wkv), v_first = self.attn(self.attn_norm(x), state[:2], v_first, mode)
        x = x + h
        h, ffn_last = self.ffn(self.ffn_norm(x), state[2])
        return x + h, (attn_last, wkv, ffn_last), v_first


class RWKV7(BlockStack):
    """`n_layers` RWKV-7 blocks. Keyword arguments (fla's names in brackets):

    n_heads [num_heads]: heads (head dim = d_model / n_heads; the paper: 8 heads of 64 at 512);
    decay_low_rank_dim, a_low_rank_dim, v_low_rank_dim, gate_low_rank_dim: LoRA widths of the
    decay, in-context learning rate, value residual and output gate (default fla's layer rule);
    ffn_hidden [intermediate_size]: channel-mix width (default 4 * d_model rounded up to 32);
    norm_eps; chunk_size of the PyTorch chunked form; use_fla: use fla's Triton kernels on CUDA
    when importable; seed of the weight initialisation.
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        n_heads: int = 4,
        decay_low_rank_dim: int | None = None,
        a_low_rank_dim: int | None = None,
        v_low_rank_dim: int | None = None,
        gate_low_rank_dim: int | None = None,
        ffn_hidden: int | None = None,
        norm_eps: float = 1e-5,
        chunk_size: int = 32,
        use_fla: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(d_model, n_layers)
        _check_config(d_model, n_layers, n_heads, ffn_hidden, norm_eps, chunk_size)
        low_rank = default_low_rank_dims(d_model, d_model // n_heads)
        given = {
            "decay_low_rank_dim": decay_low_rank_dim,
            "a_low_rank_dim": a_low_rank_dim,
            "v_low_rank_dim": v_low_rank_dim,
            "gate_low_rank_dim": gate_low_rank_dim,
        }
        for name, value in given.items():
            if value is not None:
                if value < 1:
                    raise BackboneError(f"rwkv7: {name}={value}; accepted: a positive integer")
                low_rank[name] = value
        self.n_heads = n_heads
        self.blocks = nn.ModuleList(
            RWKV7Block(
                d_model,
                layer_index=index,
                ffn_hidden=32 * ((4 * d_model + 31) // 32) if ffn_hidden is None else ffn_hidden,
                norm_eps=norm_eps,
                n_heads=n_heads,
                chunk_size=chunk_size,
                use_fla=use_fla,
                **low_rank,
            )
            for index in range(n_layers)
        )
        self.reset_parameters(torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """RWKV-LM v7's initialisation (via fla): layer-dependent mixes and decays, orthogonal
        projections, zero output projections (each block starts as the identity); LayerNorms 1 / 0."""
        for block in self.blocks:
            block.attn.reset_parameters(generator, self.n_layers)
            block.ffn.reset_parameters(generator, self.n_layers)
            for norm in (block.pre_norm, block.attn_norm, block.ffn_norm):
                if norm is not None:
                    norm.reset_parameters()

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return tuple(
            (*block.attn.init_state(batch_size, device), torch.zeros(batch_size, self.d_model, device=device))
            for block in self.blocks
        )

    def state_size(self) -> int:
        head_dim = self.d_model // self.n_heads
        return self.n_layers * (2 * self.d_model + self.n_heads * head_dim * head_dim)

    def _run(self, x: torch.Tensor, state: State | None, mode: str) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.init_state(x.shape[0], x.device)
        if len(state) != self.n_layers:
            raise BackboneError(f"RWKV7: state has {len(state)} layers; expected {self.n_layers} (use init_state)")
        new_state, v_first = [], None
        for block, layer_state in zip(self.blocks, state):
            x, layer_state, v_first = block(x, layer_state, v_first, mode)
            new_state.append(layer_state)
        return x, tuple(new_state)


def _check_config(
    d_model: int, n_layers: int, n_heads: int, ffn_hidden: int | None, norm_eps: float, chunk_size: int
) -> None:
    if n_layers < 1:
        raise BackboneError(f"rwkv7: n_layers={n_layers}; accepted: a positive integer")
    if n_heads < 1 or d_model % n_heads or d_model // n_heads < 2:
        raise BackboneError(
            f"rwkv7: n_heads={n_heads} must be positive, divide d_model={d_model} and leave head dim >= 2"
        )
    if ffn_hidden is not None and ffn_hidden < 1:
        raise BackboneError(f"rwkv7: ffn_hidden={ffn_hidden}; accepted: a positive integer")
    if norm_eps <= 0:
        raise BackboneError(f"rwkv7: norm_eps={norm_eps}; accepted: a positive number")
    if chunk_size < 1:
        raise BackboneError(f"rwkv7: chunk_size={chunk_size}; accepted: a positive integer")
