"""Small backbones for testing the conformance checker: one honest, the others broken on purpose.

The honest one keeps a running sum h_t = growth * h_{t-1} + x_t and outputs x_t + MLP(h_t / 64);
its MLP width is chosen so that the tiny preset's budget (400K) is met. Each broken variant
breaks exactly one property of the contract.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from architectures import Backbone, State

TINY_HIDDEN = 1558  # 2 x 128 x 1558 + 1558 + 128 = 400,534 parameters (+0.1 %)


class RunningSum(Backbone):
    """The honest fixture: causal, chunk- and step-consistent, finite, within budget."""

    preset_kwargs: ClassVar[dict[str, dict]] = {"tiny": {"n_layers": 1, "hidden": TINY_HIDDEN}}
    growth = 1.0

    def __init__(self, d_model: int, n_layers: int, hidden: int = 64, seed: int = 0) -> None:
        super().__init__(d_model, n_layers)
        generator = torch.Generator().manual_seed(seed)
        self.up = nn.Linear(d_model, hidden)
        self.down = nn.Linear(hidden, d_model)
        with torch.no_grad():
            for layer in (self.up, self.down):
                layer.weight.normal_(0.0, 0.02, generator=generator)

    def output(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.tanh(self.up(h / 64)))

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return (torch.zeros(batch_size, self.d_model, device=device),)

    def state_size(self) -> int:
        return self.d_model

    def sums(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """h_t for every step of x (B, L, D), starting from h (B, D)."""
        out = []
        for x_t in x.unbind(1):
            h = self.growth * h + x_t
            out.append(h)
        return torch.stack(out, dim=1)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        (h,) = self.init_state(x.shape[0], x.device) if state is None else state
        sums = self.sums(x, h)
        return self.output(x, sums), (sums[:, -1],)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h = self.growth * state[0] + x
        return self.output(x, h), (h,)


class LooksAhead(RunningSum):
    """Leaks the future: forward adds the next step's input to each running sum."""

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        (h,) = self.init_state(x.shape[0], x.device) if state is None else state
        sums = self.sums(x, h)
        ahead = torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)
        return self.output(x, sums + ahead), (sums[:, -1],)


class StepIgnoresState(RunningSum):
    """Chunked forward carries the state; step forgets it."""

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.output(x, x), (x,)


class UnusedParameter(RunningSum):
    """Holds a parameter that no output depends on."""

    def __init__(self, d_model: int, n_layers: int, hidden: int = 64, seed: int = 0) -> None:
        super().__init__(d_model, n_layers, hidden, seed)
        self.unused = nn.Parameter(torch.zeros(d_model))


class Explodes(RunningSum):
    """The running sum grows by 1.5x per step: finite for short inputs, inf long before 16K steps."""

    growth = 1.5


class OverBudget(RunningSum):
    """Twice the tiny budget."""

    preset_kwargs: ClassVar[dict[str, dict]] = {"tiny": {"n_layers": 1, "hidden": 2 * TINY_HIDDEN}}


class NoPresets(RunningSum):
    """Satisfies the contract but declares no preset sizes."""

    preset_kwargs: ClassVar[dict[str, dict]] = {}


class NotABackbone:
    """Has a forward but none of step, init_state, state_size."""

    def forward(self, x):
        return x
