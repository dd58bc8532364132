"""RWKV-7: the chunked op against the plain recurrence, and the backbone contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from architectures import BackboneError, resolve
from architectures.ops.rwkv7 import fla_available, rwkv7, rwkv7_chunked, rwkv7_recurrent, rwkv7_reference
from architectures.rwkv7 import RWKV7


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def op_inputs(seed: int, batch=2, length=45, heads=3, d_k=8, d_v=6, dtype=torch.float64):
    """Random inputs shaped as the RWKV-7 layer makes them: a = -kk, b = kk * lr, |log w| < e^-0.5."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    r, k, v = randn(batch, length, heads, d_k), randn(batch, length, heads, d_k), randn(batch, length, heads, d_v)
    log_w = -0.6065 * torch.sigmoid(2 * randn(batch, length, heads, d_k))
    kk = F.normalize(randn(batch, length, heads, d_k), dim=-1)
    learning_rate = torch.sigmoid(randn(batch, length, heads, d_k))
    state = randn(batch, heads, d_k, d_v)
    return (r, log_w, k, v, -kk, kk * learning_rate), state


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 32, 64])
def test_chunked_matches_reference(chunk_size):
    inputs, state = op_inputs(0)
    o_ref, state_ref = rwkv7_reference(*inputs, scale=0.7, initial_state=state)
    o, state_out = rwkv7_chunked(*inputs, scale=0.7, initial_state=state, chunk_size=chunk_size)
    assert o.shape == o_ref.shape == (2, 45, 3, 6)
    assert state_out.shape == state.shape
    assert rel_err(o, o_ref) < 1e-10
    assert rel_err(state_out, state_ref) < 1e-10


def test_recurrent_matches_reference_and_zero_initial_state():
    inputs, _ = op_inputs(1)
    o_ref, state_ref = rwkv7_reference(*inputs)
    o, state = rwkv7_recurrent(*inputs)
    assert rel_err(o, o_ref) < 1e-12
    assert rel_err(state, state_ref) < 1e-12
    o_chunk, state_chunk = rwkv7_chunked(*inputs)
    assert rel_err(o_chunk, o_ref) < 1e-10 and rel_err(state_chunk, state_ref) < 1e-10


def test_reference_is_the_delta_rule():
    # One step from S_0 by hand: S_1 = S_0 (diag(w) + a b^T) + v k^T in RWKV-LM's (d_v, d_k) layout.
    (r, log_w, k, v, a, b), state = op_inputs(2, batch=1, length=1, heads=1)
    s0 = state[0, 0].T
    transition = torch.diag(log_w[0, 0, 0].exp()) + torch.outer(a[0, 0, 0], b[0, 0, 0])
    s1 = s0 @ transition + torch.outer(v[0, 0, 0], k[0, 0, 0])
    o, state_out = rwkv7_reference(r, log_w, k, v, a, b, initial_state=state)
    assert torch.allclose(state_out[0, 0].T, s1)
    assert torch.allclose(o[0, 0, 0], s1 @ r[0, 0, 0])


def test_chunked_gradients_match_reference():
    inputs, state = op_inputs(3, batch=1, length=21)
    weights = torch.randn(1, 21, 3, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    def grads(fn, **kwargs):
        leaves = [x.clone().requires_grad_() for x in (*inputs, state)]
        o, final = fn(*leaves[:6], initial_state=leaves[6], **kwargs)
        ((o * weights).sum() + final.square().sum()).backward()
        return [x.grad for x in leaves]

    for got, want in zip(grads(rwkv7_chunked, chunk_size=8), grads(rwkv7_reference)):
        assert torch.isfinite(got).all()
        assert rel_err(got, want) < 1e-10


@pytest.mark.parametrize("chunk_size", [16, 64])
def test_chunked_float32_with_strongest_decay_is_accurate(chunk_size):
    inputs, state = op_inputs(4, length=130)
    inputs = list(inputs)
    inputs[1] = torch.full_like(inputs[1], -0.6065)  # the largest decay RWKV-7's layer can produce
    o_ref, state_ref = rwkv7_reference(*inputs, initial_state=state)
    o, state_out = rwkv7_chunked(*(x.float() for x in inputs), initial_state=state.float(), chunk_size=chunk_size)
    assert o.dtype == torch.float32
    assert rel_err(o, o_ref) < 1e-4
    assert rel_err(state_out, state_ref) < 1e-4


def test_op_carries_state_across_segments():
    inputs, state = op_inputs(5, length=40)
    o_full, state_full = rwkv7_chunked(*inputs, initial_state=state, chunk_size=8)
    pieces, carried = [], state
    for start, stop in ((0, 1), (1, 14), (14, 40)):
        o, carried = rwkv7_chunked(*(x[:, start:stop] for x in inputs), initial_state=carried, chunk_size=8)
        pieces.append(o)
    assert rel_err(torch.cat(pieces, 1), o_full) < 1e-12
    assert rel_err(carried, state_full) < 1e-12


def test_op_rejects_bad_input():
    (r, log_w, k, v, a, b), state = op_inputs(6)
    with pytest.raises(BackboneError, match="a has shape"):
        rwkv7_chunked(r, log_w, k, v, a[..., :3], b)
    with pytest.raises(BackboneError, match="initial state"):
        rwkv7_chunked(r, log_w, k, v, a, b, initial_state=state[:, :1])
    with pytest.raises(BackboneError, match="chunk_size"):
        rwkv7_chunked(r, log_w, k, v, a, b, chunk_size=0)
    with pytest.raises(BackboneError, match="exceeds"):
        rwkv7_chunked(r, log_w * 100, k, v, a, b, chunk_size=16)
    with pytest.raises(BackboneError, match="mode"):
        rwkv7(r, log_w, k, v, a, b, mode="parallel")


def small_model(d_model: int = 32, **kwargs) -> RWKV7:
    """A small RWKV-7 with every parameter nudged off its init (at init o_proj and the channel-mix
    value are zero, so every block is the identity and would make the checks below vacuous)."""
    config = dict(n_heads=4, chunk_size=8, seed=1)
    config.update(kwargs)
    model = RWKV7(d_model, config.pop("n_layers", 2), **config)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def inputs(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, length, 32, generator=torch.Generator().manual_seed(seed))


def max_state_err(a, b) -> float:
    return max(rel_err(x, y) for layer_a, layer_b in zip(a, b) for x, y in zip(layer_a, layer_b))


def test_value_residual_reaches_later_layers():
    # Layer 0 hands its values (per token, not state) to later layers, which lerp towards them.
    model = small_model(n_layers=2)
    x = inputs(1, 9)
    first, later = model.blocks[0].attn, model.blocks[1].attn
    _, _, v_first = first(x, first.init_state(1, "cpu"), None)
    assert v_first.shape == (1, 9, 32)
    y_a, state_a, v_out = later(x, later.init_state(1, "cpu"), v_first)
    y_b, _, _ = later(x, later.init_state(1, "cpu"), v_first + 1.0)
    assert v_out is v_first
    assert not torch.allclose(y_a, y_b)


def test_long_sequence_at_init_stays_finite():
    model = RWKV7(32, 2, n_heads=4, seed=0)
    model.blocks[0].attn.o_proj.weight.data.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    x = 3 * inputs(1, 16384, seed=2)
    with torch.no_grad():
        y, state = model(x)
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(t).all() for layer in state for t in layer)
    assert state[0][1].abs().max() < 1e3  # the decaying delta rule keeps the state bounded


def test_initialisation_follows_rwkv7():
    model = RWKV7(64, 3, n_heads=2, seed=0)
    first, last = model.blocks[0].attn, model.blocks[2].attn
    assert first.v_lora is None and last.v_lora is not None
    assert model.blocks[0].pre_norm is not None and model.blocks[1].pre_norm is None
    assert torch.count_nonzero(first.o_proj.weight) == 0 and torch.count_nonzero(model.blocks[1].ffn.value.weight) == 0
    assert torch.allclose(first.k_a, torch.full_like(first.k_a, 1.02))
    assert torch.allclose(last.g_norm.weight, torch.ones(64))  # ((i + 1) / L) ** 0.7 = 1 on the last layer
    eye = first.r_proj.weight @ first.r_proj.weight.T
    assert torch.allclose(eye, torch.eye(64), atol=1e-5)  # orthogonal
    # Decays at init: log w = -e^-0.5 sigmoid(w0) spans slow to fast channels, all within (-0.61, 0).
    log_w = -0.6065 * torch.sigmoid(first.w_lora.up.bias)
    assert log_w.max() > -0.01 and log_w.min() < -0.3
    # The initial block is the identity after the layer-0 LayerNorm.
    x = inputs(2, 5).repeat(1, 1, 2)
    y, _ = model(x)
    assert torch.allclose(y, model.blocks[0].pre_norm(x), atol=1e-6)


def test_state_size_formula():
    model = small_model()
    # per layer: two token-shift vectors (32 each) + 4 heads x 8 x 8 wkv
    assert model.state_size() == 2 * (2 * 32 + 4 * 8 * 8)


def test_registered_and_defaults_follow_fla_layer(monkeypatch):
    assert resolve("rwkv7") is RWKV7
    monkeypatch.setattr(RWKV7, "reset_parameters", lambda self, generator: None)  # shapes only
    layer = RWKV7(512, 1, n_heads=8).blocks[0]
    attn = layer.attn
    widths = (attn.w_lora.down.out_features, attn.a_lora.down.out_features, attn.g_lora.down.out_features)
    assert widths == (64, 64, 128)
    assert layer.ffn.key.out_features == 2048


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_heads": 5}, "n_heads=5"),
        ({"n_layers": 0}, "n_layers=0"),
        ({"chunk_size": 0}, "chunk_size=0"),
        ({"ffn_hidden": 0}, "ffn_hidden=0"),
        ({"decay_low_rank_dim": 0}, "decay_low_rank_dim=0"),
    ],
)
def test_bad_configuration_is_a_backbone_error(kwargs, message):
    config = dict(n_layers=2)
    config.update(kwargs)
    with pytest.raises(BackboneError, match=message):
        RWKV7(32, **config)


def test_a_state_of_other_depth_is_a_backbone_error():
    model = small_model()
    with pytest.raises(BackboneError, match="state has 1 layers"):
        model(torch.zeros(2, 5, 32), model.init_state(2)[:1])


@pytest.mark.parametrize("mode, length", [("chunk", 100), ("chunk", 1), ("recurrent", 1), ("recurrent", 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_op_fla_matches_torch(mode, length, dtype):
    if not fla_available():
        pytest.skip("needs fla (pip install -e '.[gpu]')")
    inputs, state = op_inputs(10, batch=2, length=length, heads=4, d_k=64, d_v=64, dtype=torch.float32)
    inputs, state = [x.cuda() for x in inputs], 0.1 * state.cuda()
    o_fla, state_fla = rwkv7(*(x.to(dtype) for x in inputs), initial_state=state, mode=mode, use_fla=True)
    o_torch, state_torch = rwkv7(*inputs, initial_state=state, mode=mode, use_fla=False)
    tolerance = 1e-3 if dtype == torch.float32 else 3e-2
    assert o_fla.shape == o_torch.shape and state_fla.shape == state_torch.shape
    assert rel_err(o_fla, o_torch) < tolerance
    assert rel_err(state_fla, state_torch) < tolerance


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_backbone_fla_matches_torch():
    if not fla_available():
        pytest.skip("needs fla (pip install -e '.[gpu]')")
    with_fla = small_model(128, n_heads=2).cuda()  # head dim 64, as the paper's
    without = small_model(128, n_heads=2, use_fla=False).cuda()
    x = torch.randn(2, 100, 128, generator=torch.Generator().manual_seed(3)).cuda()
    outputs = []
    for model in (with_fla, without):
        y, state = model(x)
        y_step, state = model.step(x[:, 0], state)
        outputs.append((y, y_step, state))
    (y_fla, step_fla, state_fla), (y_torch, step_torch, state_torch) = outputs
    assert rel_err(y_fla, y_torch) < 1e-3
    assert rel_err(step_fla, step_torch) < 1e-3
    assert max_state_err(state_fla, state_torch) < 1e-3
