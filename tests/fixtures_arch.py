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


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast computes in on x's device (x's own dtype outside autocast)."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class ReturnsOnlyOutput(RunningSum):
    """forward returns y alone, not (y, state)."""

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        return super().forward(x, state)[0]


class WideOutput(RunningSum):
    """Outputs 2 x d_model features (its last projection does not map back to d_model)."""

    def output(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        y = super().output(x, h)
        return torch.cat([y, y], dim=-1)


class DropsLastStep(RunningSum):
    """forward returns L - 1 outputs (a shift that drops the last step)."""

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        y, state = super().forward(x, state)
        return y[:, :-1], state


class LayerFirstState(RunningSum):
    """Keeps its state as (layers, B, D), like nn.LSTM's hidden state: not batch-first."""

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return (torch.zeros(1, batch_size, self.d_model, device=device),)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        (h,) = self.init_state(x.shape[0], x.device) if state is None else state
        sums = self.sums(x, h[0])
        return self.output(x, sums), (sums[None, :, -1],)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h = self.growth * state[0][0] + x
        return self.output(x, h), (h[None],)


class MiscountsState(RunningSum):
    """state_size() reports twice the numbers its state holds."""

    def state_size(self) -> int:
        return 2 * self.d_model


class StepWrongShape(RunningSum):
    """step returns y of shape (B, 1, D) instead of (B, D)."""

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, state = super().step(x, state)
        return y[:, None], state


class FloatInitState(RunningSum):
    """init_state returns the Python float 0.0 (which broadcasts in forward) instead of a tensor."""

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return (0.0,)


class MakesNaN(RunningSum):
    """Takes the square root of the running sum, NaN wherever it is negative."""

    def output(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return super().output(x, torch.sqrt(h))


class NoneIsNotInitState(RunningSum):
    """forward with state=None starts the sum from ones, init_state from zeros."""

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if state is None:
            state = (torch.ones(x.shape[0], self.d_model),)
        return super().forward(x, state)


class ForwardIgnoresState(RunningSum):
    """forward always starts from init_state, whatever state it is given; step carries it."""

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        return super().forward(x, None)


class ReturnsFirstState(RunningSum):
    """forward returns the state after the first step of the segment instead of the last."""

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        (h,) = self.init_state(x.shape[0], x.device) if state is None else state
        sums = self.sums(x, h)
        return self.output(x, sums), (sums[:, 0],)


class BF16State(RunningSum):
    """Keeps its running sum in the compute dtype: bfloat16 under autocast."""

    def sums(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(x)
        return super().sums(x.to(dtype), h.to(dtype))


class CancelsInBF16(RunningSum):
    """Feeds its MLP the difference of two projections of large inputs, up(h / 64 + 8) - up(8): close
    to W h / 64 in float32, but in bfloat16 (spacing 1/16 at 8) much of h / 64 is rounded away."""

    def output(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        offset = torch.full_like(h, 8.0)
        return x + self.down(torch.tanh(self.up(h / 64 + offset) - self.up(offset)))


class NaNInBF16(RunningSum):
    """Adds lowest - lowest to its hidden activations, with lowest float32's lowest value in their dtype:
    0 in float32, but in bfloat16 (whose range ends just short of float32's) lowest is -inf and the sum NaN.
    It stands for code that uses torch.finfo(torch.float32).min as a mask value in the compute dtype."""

    def output(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        hidden = self.up(h / 64)  # bfloat16 under autocast
        lowest = torch.tensor(torch.finfo(torch.float32).min).to(hidden.dtype)
        return x + self.down(torch.tanh(hidden + (lowest - lowest)))
