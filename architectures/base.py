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

An external backbone declares its sizes in `preset_kwargs`: size name -> the constructor keyword
arguments (other than d_model) that meet that size's parameter budget. The shipped backbones have
their rows in `architectures.registry.SIZES` instead (see `architectures.build.size_kwargs`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from architectures.errors import BackboneError

State = Any  # nested tuples / lists / dicts of tensors, batch first


class Backbone(nn.Module):
    preset_kwargs: ClassVar[dict[str, dict[str, Any]]] = {}
    """An external backbone's sizes: size name -> constructor keyword arguments other than d_model."""

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


class BlockStack(Backbone):
    """A backbone that is a stack of residual blocks, `self.blocks`.

    Each block maps `(x, layer_state, mode)` to `(x, layer_state)`, with mode "chunk" (a segment,
    the chunked parallel form) or "recurrent" (one step, the recurrent form); its token mixer, the
    attribute named by `mixer_attr`, provides `init_state(batch_size, device)` and `state_size()`.
    Subclasses build `self.blocks` and may override `_run` (RWKV-7 passes its value residual along).
    """

    mixer_attr: ClassVar[str] = "attn"

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return tuple(getattr(block, self.mixer_attr).init_state(batch_size, device) for block in self.blocks)

    def state_size(self) -> int:
        return sum(getattr(block, self.mixer_attr).state_size() for block in self.blocks)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[-1] != self.d_model or x.shape[1] < 1:
            raise BackboneError(
                f"{type(self).__name__}.forward: x has shape {tuple(x.shape)}; "
                f"expected (B, L, {self.d_model}) with L >= 1"
            )
        return self._run(x, state, "chunk")

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 2 or x.shape[-1] != self.d_model:
            raise BackboneError(
                f"{type(self).__name__}.step: x has shape {tuple(x.shape)}; expected (B, {self.d_model})"
            )
        y, state = self._run(x[:, None], state, "recurrent")
        return y[:, 0], state

    def _run(self, x: torch.Tensor, state: State | None, mode: str) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.init_state(x.shape[0], x.device)
        if len(state) != len(self.blocks):
            raise BackboneError(
                f"{type(self).__name__}: state has {len(state)} layers; expected {len(self.blocks)} (use init_state)"
            )
        new_state = []
        for block, layer_state in zip(self.blocks, state):
            x, layer_state = block(x, layer_state, mode)
            new_state.append(layer_state)
        return x, tuple(new_state)
