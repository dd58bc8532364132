"""The backbone contract.

A backbone maps a segment of embeddings `(B, L, D)` to outputs `(B, L, D)` causally, taking
and returning a recurrent state so that a long sequence can be processed segment by segment,
or one step at a time. Embeddings, the final norm and the output heads belong to the training
recipe, not to the backbone: two backbones differ only in what happens between them.

    class MyBackbone(Backbone):
        def __init__(self, d_model: int, n_layers: int, **kwargs): ...
        def forward(self, x, state=None): ...      # (B, L, D) -> ((B, L, D), state)
        def step(self, x, state): ...              # (B, D)    -> ((B, D), state), constant cost
        def init_state(self, batch_size, device): ...
        def state_size(self) -> int: ...           # numbers held per sequence

A state is any nesting of tuples, lists and dicts whose leaves are tensors with the batch on
dimension 0 (so that it can be detached, moved and split across ranks generically).

`preset_kwargs` maps a preset name to the constructor keyword arguments (other than d_model)
that meet that preset's parameter budget.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

State = Any  # nested tuples / lists / dicts of tensors, batch first


class Backbone(nn.Module):
    preset_kwargs: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, d_model: int, n_layers: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.n_layers = n_layers

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        raise NotImplementedError

    def state_size(self) -> int:
        raise NotImplementedError


def map_state(state: State, fn) -> State:
    """Apply `fn` to every tensor leaf of a state, keeping its structure."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, dict):
        return {k: map_state(v, fn) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(v, fn) for v in state)
    return state


def detach_state(state: State) -> State:
    """The same state cut from the autograd graph (for chunkwise training)."""
    return map_state(state, lambda t: t.detach())


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
