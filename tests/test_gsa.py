"""Gated Slot Attention: the chunked op against the plain recurrence, and the backbone contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from architectures import BackboneError, resolve
from architectures.gsa import GatedSlotAttention
from architectures.ops.gsa import LOG_DECAY_LIMIT, gsa_chunked, gsa_recurrent, gsa_reference


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def op_inputs(
    seed: int, batch=2, length=45, q_heads=4, kv_heads=2, d_k=8, d_v=6, slots=5, gate_scale=1.0, dtype=torch.float64
):
    """Random GSA inputs shaped as the GSA layer makes them: s = 1 - exp(g), g = logsigmoid(f) / 8."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    q = randn(batch, length, q_heads, d_k)
    k, v = randn(batch, length, kv_heads, d_k), randn(batch, length, kv_heads, d_v)
    g = F.logsigmoid(2 * randn(batch, length, kv_heads, slots)) / 8 * gate_scale
    s = -torch.expm1(g)
    state = (randn(batch, kv_heads, d_k, slots), randn(batch, kv_heads, slots, d_v))
    return (q, k, v, s, g), state


@pytest.mark.parametrize("chunk_size", [1, 8, 16, 64])
@pytest.mark.parametrize("gate_scale", [1.0, 400.0])  # 400: most rows beyond LOG_DECAY_LIMIT (exact form)
def test_chunked_matches_reference(chunk_size, gate_scale):
    inputs, state = op_inputs(0, gate_scale=gate_scale)
    o_ref, (hk_ref, hv_ref) = gsa_reference(*inputs, scale=0.7, initial_state=state)
    o, (hk, hv) = gsa_chunked(*inputs, scale=0.7, initial_state=state, chunk_size=chunk_size)
    assert o.shape == o_ref.shape == (2, 45, 4, 6)
    for got, want in ((o, o_ref), (hk, hk_ref), (hv, hv_ref)):
        assert rel_err(got, want) < 1e-12


def test_chunked_mixes_fast_and_exact_chunks():
    inputs, state = op_inputs(1, length=64)
    q, k, v, s, g = inputs
    g = g.clone()
    g[:, 16:32] *= 400  # only rows of the second chunk of 16 go beyond the factorised form
    s = -torch.expm1(g)
    assert g[:, 16:32].sum(1).min() < -LOG_DECAY_LIMIT < g[:, :16].sum(1).min()
    o_ref, state_ref = gsa_reference(q, k, v, s, g, initial_state=state)
    o, state_out = gsa_chunked(q, k, v, s, g, initial_state=state, chunk_size=16)
    assert rel_err(o, o_ref) < 1e-12
    assert all(rel_err(a, b) < 1e-12 for a, b in zip(state_out, state_ref))


def test_recurrent_matches_reference_and_zero_initial_state():
    inputs, _ = op_inputs(2)
    o_ref, state_ref = gsa_reference(*inputs)
    o, state = gsa_recurrent(*inputs)
    assert rel_err(o, o_ref) < 1e-12
    assert all(rel_err(a, b) < 1e-12 for a, b in zip(state, state_ref))


@pytest.mark.parametrize("gate_scale", [1.0, 400.0])
def test_chunked_gradients_match_reference(gate_scale):
    inputs, state = op_inputs(3, batch=1, length=21, gate_scale=gate_scale)
    weights = torch.randn(1, 21, 4, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    def grads(fn, **kwargs):
        leaves = [x.clone().requires_grad_() for x in (*inputs, *state)]
        o, (hk, hv) = fn(*leaves[:5], initial_state=tuple(leaves[5:]), **kwargs)
        ((o * weights).sum() + hk.sum() + hv.square().sum()).backward()
        return [x.grad for x in leaves]

    for got, want in zip(grads(gsa_chunked, chunk_size=8), grads(gsa_reference)):
        assert torch.isfinite(got).all()
        assert rel_err(got, want) < 1e-10


def test_chunked_float32_with_extreme_gates_is_finite_and_accurate():
    inputs, state = op_inputs(4, length=100, gate_scale=60.0)
    leaves = [x.float().requires_grad_() for x in inputs]
    o, (hk, hv) = gsa_chunked(*leaves, initial_state=tuple(h.float() for h in state))
    (o.sum() + hk.sum() + hv.sum()).backward()
    assert all(torch.isfinite(x.grad).all() for x in leaves)
    o_ref, _ = gsa_reference(*inputs, initial_state=state)
    assert rel_err(o, o_ref) < 1e-5


def test_chunked_is_exactly_causal_with_strong_gates():
    (q, k, v, s, g), state = op_inputs(6, length=64, gate_scale=60.0, dtype=torch.float32)
    state = tuple(h.float() for h in state)
    q2, g2 = q.clone(), g.clone()
    q2[:, 20:] += 1.0
    g2[:, 20:] *= 10  # later rows of the same chunk switch to the exact form
    o, _ = gsa_chunked(q, k, v, s, g, initial_state=state)
    o2, _ = gsa_chunked(q2, k, v, -torch.expm1(g2), g2, initial_state=state)
    assert torch.equal(o[:, :20], o2[:, :20])
    assert not torch.allclose(o[:, 20:], o2[:, 20:])


def test_op_rejects_mismatched_shapes():
    (q, k, v, s, g), state = op_inputs(5)
    with pytest.raises(BackboneError, match="g has shape"):
        gsa_chunked(q, k, v, s, g[..., :3])
    with pytest.raises(BackboneError, match="initial state"):
        gsa_chunked(q, k, v, s, g, initial_state=(state[0][:, :1], state[1]))
    with pytest.raises(BackboneError, match="chunk_size"):
        gsa_chunked(q, k, v, s, g, chunk_size=0)


def small_model(**kwargs) -> GatedSlotAttention:
    config = dict(n_heads=4, n_kv_heads=2, n_slots=8, chunk_size=8, seed=1)
    config.update(kwargs)
    return GatedSlotAttention(32, 2, **config)


def test_state_size_formula():
    # per layer: 2 kv heads x (8 x 8 slot keys + 8 x 8 slot values)
    assert small_model().state_size() == 2 * 2 * (8 * 8 + 8 * 8)
    # with short convolutions of width 3: + 2 x (32 + 16 + 16) cached inputs per layer
    assert small_model(use_short_conv=True, conv_size=3).state_size() == 2 * (2 * (8 * 8 + 8 * 8) + 2 * 64)


def test_registered_and_defaults_follow_fla_layer():
    assert resolve("gsa") is GatedSlotAttention
    mixer = GatedSlotAttention(128, 1, n_heads=4).blocks[0].attn
    assert (mixer.n_slots, mixer.n_kv_heads, mixer.convs) == (32, 4, None)  # slots default to the head dim


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_heads": 5}, "n_heads=5"),
        ({"n_kv_heads": 3}, "n_kv_heads=3"),
        ({"n_slots": 0}, "n_slots=0"),
        ({"feature_map": "t2r"}, "feature_map='t2r'"),
        ({"chunk_size": 0}, "chunk_size=0"),
    ],
)
def test_bad_configuration_is_a_backbone_error(kwargs, message):
    with pytest.raises(BackboneError, match=message):
        small_model(**kwargs)
