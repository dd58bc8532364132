"""LSTM baseline: pre-norm residual blocks of a one-layer `nn.LSTM` then a SwiGLU MLP.

`forward` runs each layer's `nn.LSTM` over the whole segment (PyTorch's fused kernel: cuDNN on
CUDA, the native loop on CPU); `step` runs the same module on a one-step sequence. The state is
(h, c) per layer. See docs/architectures/lstm.md.
"""

from __future__ import annotations

import torch
from torch import nn

from architectures.base import Backbone, State
from architectures.errors import BackboneError
from architectures.init import init_weights
from architectures.layers import RMSNorm, SwiGLU


class LSTMBlock(nn.Module):
    """x + LSTM(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)). Layer state: (h, c), each (B, D)."""

    def __init__(self, d_model: int, mlp_hidden: int, norm_eps: float) -> None:
        super().__init__()
        self.rnn_norm = RMSNorm(d_model, eps=norm_eps)
        self.rnn = nn.LSTM(d_model, d_model, batch_first=True)
        self.mlp_norm = RMSNorm(d_model, eps=norm_eps)
        self.mlp = SwiGLU(d_model, mlp_hidden)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h0, c0 = (s.to(x.dtype)[None] for s in state)  # nn.LSTM keeps layers first: (1, B, D)
        h, (hn, cn) = self.rnn(self.rnn_norm(x), (h0, c0))
        x = x + h
        dtype = torch.promote_types(state[0].dtype, x.dtype)  # float32 states stay float32 under autocast
        return x + self.mlp(self.mlp_norm(x)), (hn[0].to(dtype), cn[0].to(dtype))


class LSTM(Backbone):
    """`n_layers` LSTM + SwiGLU blocks (hidden size = d_model). Keyword arguments:

    mlp_hidden: SwiGLU width (default 2 d_model); norm_eps; seed of the initialisation.
    State: ((h, c) per layer), each (B, d_model) float32.
    """

    def __init__(
        self, d_model: int, n_layers: int, mlp_hidden: int | None = None, norm_eps: float = 1e-6, seed: int = 0
    ) -> None:
        super().__init__(d_model, n_layers)
        if n_layers < 1:
            raise BackboneError(f"lstm: n_layers={n_layers}; accepted: a positive integer")
        if mlp_hidden is not None and mlp_hidden < 1:
            raise BackboneError(f"lstm: mlp_hidden={mlp_hidden}; accepted: a positive integer")
        hidden = 2 * d_model if mlp_hidden is None else mlp_hidden
        self.blocks = nn.ModuleList(LSTMBlock(d_model, hidden, norm_eps) for _ in range(n_layers))
        self.reset_parameters(torch.Generator().manual_seed(seed))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """LSTM weights and biases ~ U(-1/sqrt(D), 1/sqrt(D)) (PyTorch's default); MLP and norms by `init_weights`."""
        bound = self.d_model**-0.5

        def init_lstm(module: nn.Module) -> None:
            if isinstance(module, nn.LSTM):
                for weight in module.parameters():
                    weight.uniform_(-bound, bound, generator=generator)

        init_weights(self, generator, init_lstm)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        def zeros() -> torch.Tensor:
            return torch.zeros(batch_size, self.d_model, device=device)

        return tuple((zeros(), zeros()) for _ in self.blocks)

    def state_size(self) -> int:
        return self.n_layers * 2 * self.d_model

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise BackboneError(f"LSTM.forward: x has shape {tuple(x.shape)}; expected (B, L, {self.d_model})")
        return self._run(x, state)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 2 or x.shape[-1] != self.d_model:
            raise BackboneError(f"LSTM.step: x has shape {tuple(x.shape)}; expected (B, {self.d_model})")
        y, state = self._run(x[:, None], state)
        return y[:, 0], state

    def _run(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.init_state(x.shape[0], x.device)
        new_state = []
        for block, layer_state in zip(self.blocks, state):
            x, layer_state = block(x, layer_state)
            new_state.append(layer_state)
        return x, tuple(new_state)
