"""LSTM baseline: the fused forward against a hand-written LSTM cell loop, state carry, step
consistency, presets and bad input."""

from __future__ import annotations

import pytest
import torch

from architectures import BackboneError, resolve
from architectures.lstm import LSTM


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def small_model(**kwargs) -> LSTM:
    config = dict(mlp_hidden=24, seed=1) | kwargs
    return LSTM(16, config.pop("n_layers", 2), **config).double()


def inputs(length: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(2, length, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def double_state(model: LSTM, batch: int):
    return tuple(tuple(t.double() for t in layer) for layer in model.init_state(batch))


def reference_block_rnn(block, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The LSTM equations (gates i, f, g, o) one step at a time, from the module's weights."""
    rnn = block.rnn
    outputs = []
    for x_t in block.rnn_norm(x).unbind(1):
        gates = x_t @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 1)


def test_fused_layer_matches_the_lstm_equations():
    model, x = small_model(n_layers=1), inputs(13)
    h0, c0 = (torch.randn(2, 16, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in (7, 8))
    y, ((h, c),) = model(x, ((h0, c0),))
    block = model.blocks[0]
    mixed = x + reference_block_rnn(block, x, h0, c0)
    expected = mixed + block.mlp(block.mlp_norm(mixed))
    assert rel_err(y, expected) < 1e-12


def test_state_is_h_and_c_per_layer_in_float32():
    model = LSTM(16, 3, mlp_hidden=8)
    state = model.init_state(4)
    assert len(state) == 3 and all(t.shape == (4, 16) and t.dtype == torch.float32 for layer in state for t in layer)
    assert model.state_size() == 3 * 2 * 16
    _, new_state = model(torch.zeros(4, 5, 16), state)
    assert all(t.shape == (4, 16) and t.dtype == torch.float32 for layer in new_state for t in layer)


def test_init_is_uniform_within_one_over_sqrt_width():
    assert small_model(seed=3).blocks[0].rnn.weight_hh_l0.abs().max() <= 16**-0.5


def test_registered():
    assert resolve("lstm") is LSTM


@pytest.mark.parametrize("kwargs, message", [({"n_layers": 0}, "n_layers=0"), ({"mlp_hidden": 0}, "mlp_hidden=0")])
def test_bad_configuration_is_a_backbone_error(kwargs, message):
    with pytest.raises(BackboneError, match=message):
        small_model(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cudnn_matches_cpu():
    cpu, gpu = LSTM(128, 2, seed=2), LSTM(128, 2, seed=2).cuda()
    x = torch.randn(2, 300, 128, generator=torch.Generator().manual_seed(6))
    y_cpu, _ = cpu(x)
    y_gpu, state = gpu(x.cuda())
    assert rel_err(y_gpu.cpu(), y_cpu) < 1e-3
    step_state, steps = gpu.init_state(2, "cuda"), []
    for t in range(5):
        y_t, step_state = gpu.step(x[:, t].cuda(), step_state)
        steps.append(y_t)
    assert rel_err(torch.stack(steps, 1).cpu(), y_cpu[:, :5]) < 1e-3
