"""A minimal backbone to copy: a stack of gated linear recurrences, in plain PyTorch.

Each layer: h_t = a_t * h_{t-1} + (1 - a_t) * v_t with a per-channel gate a_t = sigmoid(W_a x_t),
output W_o(h_t * silu(W_g x_t)), then a feed-forward sublayer; both sublayers pre-normed and
residual. The state is one (B, D) tensor per layer. `forward` loops over time (simple, not fast):
replace it by a chunked form for speed, keeping `step` as the recurrent reference.

Try it:  python -m bench check-arch examples.minimal_backbone:GatedRecurrence
         python -m bench run --arch examples.minimal_backbone:GatedRecurrence --preset smoke --out /tmp/mine
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from architectures import Backbone


class Layer(nn.Module):
    def __init__(self, d_model: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(d_model), nn.RMSNorm(d_model)
        self.gate_a, self.value = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.gate_out, self.out = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_hidden), nn.SiLU(), nn.Linear(mlp_hidden, d_model))

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x (B, D), h (B, D) float32 -> (y, new h)."""
        u = self.norm1(x)
        a = torch.sigmoid(self.gate_a(u)).float()
        h = a * h + (1 - a) * self.value(u).float()
        x = x + self.out(h.to(x.dtype) * F.silu(self.gate_out(u)))
        return x + self.mlp(self.norm2(x)), h


class GatedRecurrence(Backbone):
    """`n_layers` gated linear recurrences; sizes per preset in `preset_kwargs`."""

    preset_kwargs = {"tiny": {"n_layers": 2, "mlp_hidden": 512}}

    def __init__(self, d_model: int, n_layers: int, mlp_hidden: int = 512, seed: int = 0) -> None:
        super().__init__(d_model, n_layers)
        self.layers = nn.ModuleList(Layer(d_model, mlp_hidden) for _ in range(n_layers))
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                if p.dim() == 2:
                    p.normal_(0.0, 0.02, generator=generator)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros(batch_size, self.d_model, device=device) for _ in self.layers)

    def state_size(self) -> int:
        return self.n_layers * self.d_model

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        new = []
        for layer, h in zip(self.layers, state):
            x, h = layer.step(x, h)
            new.append(h)
        return x, tuple(new)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None):
        state = self.init_state(x.shape[0], x.device) if state is None else state
        outputs = []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t], state)
            outputs.append(y)
        return torch.stack(outputs, dim=1), state
