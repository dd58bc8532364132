"""Gated DeltaNet: the chunked op against the plain recurrence, and the backbone contract."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from architectures import SIZES, BackboneError, resolve
from architectures.gdn import GatedDeltaNet
from architectures.ops.gdn import (
    fla_available,
    gated_delta_rule,
    gated_delta_rule_chunked,
    gated_delta_rule_recurrent,
    gated_delta_rule_reference,
    unit_lower_inverse,
)
from bench.presets import PRESETS


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def op_inputs(seed: int, batch=2, length=45, heads=3, d_k=8, d_v=6, gate_scale=1.0, beta_max=1.0, dtype=torch.float64):
    """Random inputs shaped as the GDN layer makes them: unit q and k, beta in (0, beta_max), g <= 0."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    q = F.normalize(randn(batch, length, heads, d_k), dim=-1)
    k = F.normalize(randn(batch, length, heads, d_k), dim=-1)
    v = randn(batch, length, heads, d_v)
    g = -F.softplus(randn(batch, length, heads) - 2) * gate_scale
    beta = beta_max * torch.sigmoid(randn(batch, length, heads))
    state = randn(batch, heads, d_k, d_v)
    return (q, k, v, g, beta), state


@pytest.mark.parametrize("size", [1, 2, 5, 16, 24, 64])
def test_unit_lower_inverse_inverts(size):
    strict = torch.rand(3, size, size, generator=torch.Generator().manual_seed(size), dtype=torch.float64)
    strict = (2 * strict - 1).tril(-1)  # entries in [-1, 1], as beta_t exp(b_t - b_j) k_t . k_j
    eye = torch.eye(size, dtype=torch.float64)
    inverse = unit_lower_inverse(strict)
    assert torch.equal(inverse.triu(1), torch.zeros_like(inverse))
    assert rel_err(inverse @ (eye + strict), eye.expand_as(strict)) < 1e-12


@pytest.mark.parametrize("size", [1, 5, 16])
def test_unit_lower_inverse_gradient_is_exact(size):
    strict = torch.rand(2, size, size, generator=torch.Generator().manual_seed(size), dtype=torch.float64)
    strict = (2 * strict - 1).tril(-1).requires_grad_()
    # The backward is closed-form; gradcheck compares it with finite differences of the forward.
    assert torch.autograd.gradcheck(lambda x: unit_lower_inverse(x.tril(-1)), (strict,))


@pytest.mark.parametrize("chunk_size", [1, 8, 24, 64])
@pytest.mark.parametrize("gate_scale, beta_max", [(1.0, 1.0), (50.0, 1.0), (0.0, 2.0)])
def test_chunked_matches_reference(chunk_size, gate_scale, beta_max):
    inputs, state = op_inputs(0, gate_scale=gate_scale, beta_max=beta_max)
    o_ref, s_ref = gated_delta_rule_reference(*inputs, scale=0.7, initial_state=state)
    o, s = gated_delta_rule_chunked(*inputs, scale=0.7, initial_state=state, chunk_size=chunk_size)
    assert o.shape == o_ref.shape == (2, 45, 3, 6)
    assert s.shape == s_ref.shape == (2, 3, 8, 6)
    assert rel_err(o, o_ref) < 1e-10
    assert rel_err(s, s_ref) < 1e-10


def test_recurrent_matches_reference_and_zero_initial_state():
    inputs, _ = op_inputs(2)
    o_ref, s_ref = gated_delta_rule_reference(*inputs)
    o, s = gated_delta_rule_recurrent(*inputs)
    assert rel_err(o, o_ref) < 1e-12
    assert rel_err(s, s_ref) < 1e-12
    o_chunk, s_chunk = gated_delta_rule_chunked(*inputs, chunk_size=16)
    assert rel_err(o_chunk, o_ref) < 1e-10
    assert rel_err(s_chunk, s_ref) < 1e-10


def test_delta_rule_overwrites_a_key():
    # With beta = 1 and no decay, writing (k, v2) after (k, v1) leaves exactly v2 under k.
    k = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 0.0]]]]).double().transpose(0, 1)  # (1, 2, 1, 2)
    v = torch.tensor([[[[1.0, 2.0]]], [[[5.0, -3.0]]]]).double().transpose(0, 1)
    g, beta = torch.zeros(1, 2, 1, dtype=torch.float64), torch.ones(1, 2, 1, dtype=torch.float64)
    o, state = gated_delta_rule_chunked(k, k, v, g, beta, scale=1.0)
    assert torch.allclose(o[0, 1, 0], torch.tensor([5.0, -3.0], dtype=torch.float64))
    assert torch.allclose(state[0, 0], torch.tensor([[5.0, -3.0], [0.0, 0.0]], dtype=torch.float64))


def test_chunked_gradients_match_reference():
    inputs, state = op_inputs(3, batch=1, length=21, gate_scale=3.0)
    weights = torch.randn(1, 21, 3, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    def grads(fn, **kwargs):
        leaves = [x.clone().requires_grad_() for x in (*inputs, state)]
        o, s = fn(*leaves[:5], initial_state=leaves[5], **kwargs)
        ((o * weights).sum() + s.square().sum()).backward()
        return [x.grad for x in leaves]

    for got, want in zip(grads(gated_delta_rule_chunked, chunk_size=8), grads(gated_delta_rule_reference)):
        assert torch.isfinite(got).all()
        assert rel_err(got, want) < 1e-10


@pytest.mark.parametrize("aligned", [False, True])
def test_chunked_float32_is_accurate(aligned):
    inputs, state = op_inputs(4, length=200, d_k=16, d_v=16, gate_scale=0.05)
    q, k, v, g, beta = inputs
    if aligned:  # near-identical keys and beta ~ 1: the hardest case for the triangular inverse
        k = F.normalize(k[:, :1] + 0.05 * k, dim=-1)
        beta = torch.full_like(beta, 0.99)
    o_ref, s_ref = gated_delta_rule_reference(q, k, v, g, beta, initial_state=state)
    leaves = [x.float().requires_grad_() for x in (q, k, v, g, beta)]
    o, s = gated_delta_rule_chunked(*leaves, initial_state=state.float())
    (o.sum() + s.sum()).backward()
    assert all(torch.isfinite(x.grad).all() for x in leaves)
    assert rel_err(o, o_ref) < 1e-4
    assert rel_err(s, s_ref) < 1e-4


def test_op_rejects_bad_input():
    (q, k, v, g, beta), state = op_inputs(5)
    with pytest.raises(BackboneError, match="beta has shape"):
        gated_delta_rule_chunked(q, k, v, g, beta[..., :2])
    with pytest.raises(BackboneError, match="initial state"):
        gated_delta_rule_chunked(q, k, v, g, beta, initial_state=state[:, :1])
    with pytest.raises(BackboneError, match="chunk_size"):
        gated_delta_rule_chunked(q, k, v, g, beta, chunk_size=0)
    with pytest.raises(BackboneError, match="mode 'fused'"):
        gated_delta_rule(q, k, v, g, beta, mode="fused")


def small_model(**kwargs) -> GatedDeltaNet:
    config = dict(n_heads=2, chunk_size=8, seed=1)
    config.update(kwargs)
    return GatedDeltaNet(32, 2, **config)


@pytest.fixture
def one_thread():
    # Small batched matmuls over 16K steps are several times slower with two threads on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_long_sequence_at_init_stays_finite(one_thread):
    spec = PRESETS["tiny"]
    model = GatedDeltaNet(spec.d_model, **SIZES["gdn"]["tiny"])
    x = torch.randn(1, 16_384, spec.d_model, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y, state = model(x)
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(h).all() for layer in state for h in layer)


def test_state_size_formula():
    # per layer: 2 heads x (12 x 24) delta-rule state + 3 x (24 + 24 + 48) convolution cache
    assert small_model().state_size() == 2 * (2 * 12 * 24 + 3 * 96)
    model = small_model(conv_size=3, expand_v=1.5)  # 12 x 18 state, 2 x (24 + 24 + 36) cache
    assert (
        sum(h.numel() for layer in model.init_state(3) for h in layer)
        == 3 * model.state_size()
        == 3 * 2 * (2 * 12 * 18 + 2 * 84)
    )


def test_init_follows_fla():
    a, c = small_model(seed=3), small_model(seed=4)
    assert not torch.equal(a.blocks[0].attn.A_log, c.blocks[0].attn.A_log)
    assert abs(a.blocks[0].attn.v_proj.weight.std().item() - 0.02) < 0.003
    mixer = GatedDeltaNet(32, 1, n_heads=64, head_dim=4, seed=5).blocks[0].attn  # 64 heads -> enough draws
    a_init = mixer.A_log.exp()
    assert 0 <= a_init.min() and a_init.max() < 16
    dt = F.softplus(mixer.dt_bias)
    assert 1e-3 - 1e-6 <= dt.min() and dt.max() <= 0.1 + 1e-6


def test_registered_and_defaults_follow_fla_layer():
    assert resolve("gdn") is GatedDeltaNet
    mixer = GatedDeltaNet(512, 1, n_heads=8).blocks[0].attn
    assert (mixer.head_k_dim, mixer.head_v_dim, mixer.key_dim, mixer.value_dim) == (48, 96, 384, 768)
    assert mixer.convs is not None and mixer.convs[0].kernel_size == 4
    assert mixer.chunk_size == 64
    assert math.isclose(mixer.o_norm.eps, 1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_heads": 0}, "n_heads=0"),
        ({"head_dim": 0}, "head_dim=0"),
        ({"expand_v": 0.3}, "expand_v=0.3"),
        ({"conv_size": 1}, "conv_size=1"),
        ({"mlp_hidden": 0}, "mlp_hidden=0"),
        ({"chunk_size": 0}, "chunk_size=0"),
    ],
)
def test_bad_configuration_is_a_backbone_error(kwargs, message):
    with pytest.raises(BackboneError, match=message):
        small_model(**kwargs)


# fla's Triton kernels against our PyTorch path, on the same inputs and weights (CUDA only).
needs_fla = pytest.mark.skipif(
    not (torch.cuda.is_available() and fla_available()), reason="needs CUDA and fla (pip install -e '.[gpu]')"
)
GPU_TOLERANCE = {torch.float32: 2e-3, torch.bfloat16: 2e-2}  # fla runs float32 dots in TF32


@pytest.mark.gpu
@needs_fla
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode, length", [("chunk", 100), ("chunk", 1), ("recurrent", 1), ("recurrent", 7)])
def test_gpu_op_fla_matches_torch(dtype, mode, length):
    inputs, state = op_inputs(7, length=length, heads=4, d_k=32, d_v=64, dtype=torch.float32)
    inputs, state = [x.cuda() for x in inputs], state.cuda()
    low = [x.to(dtype) for x in inputs[:3]] + inputs[3:]
    o_fla, s_fla = gated_delta_rule(*low, initial_state=state, mode=mode, use_fla=True)
    o_torch, s_torch = gated_delta_rule(*inputs, initial_state=state, mode=mode, use_fla=False)
    assert o_fla.shape == o_torch.shape and s_fla.shape == s_torch.shape
    assert s_fla.dtype == torch.float32
    assert rel_err(o_fla, o_torch) < GPU_TOLERANCE[dtype]
    assert rel_err(s_fla, s_torch) < GPU_TOLERANCE[dtype]


@pytest.mark.gpu
@needs_fla
def test_gpu_op_fla_gradients_match_torch():
    inputs, state = op_inputs(8, length=100, heads=4, d_k=32, d_v=64, dtype=torch.float32)
    inputs, state = [x.cuda() for x in inputs], state.cuda()
    weights = torch.randn(2, 100, 4, 64, generator=torch.Generator().manual_seed(2)).cuda()

    def grads(use_fla: bool):
        leaves = [x.clone().requires_grad_() for x in (*inputs, state)]
        o, s = gated_delta_rule(*leaves[:5], initial_state=leaves[5], use_fla=use_fla)
        ((o * weights).sum() + s.sum()).backward()
        return [x.grad for x in leaves]

    for got, want in zip(grads(True), grads(False)):
        assert rel_err(got, want) < 1e-2


@pytest.mark.gpu
@needs_fla
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_backbone_fla_matches_torch(dtype):
    with_fla = GatedDeltaNet(128, 2, n_heads=4, seed=3).cuda()
    without = GatedDeltaNet(128, 2, n_heads=4, use_fla=False, seed=3).cuda()
    x = torch.randn(2, 100, 128, generator=torch.Generator().manual_seed(4)).cuda()
    outputs = []
    for model in (with_fla, without):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            y, state = model(x)
            steps = []
            for t in range(3):
                y_t, state = model.step(x[:, t], state)
                steps.append(y_t)
        outputs.append((y, torch.stack(steps, 1), state))
    (y_fla, steps_fla, state_fla), (y_torch, steps_torch, state_torch) = outputs
    assert rel_err(y_fla, y_torch) < GPU_TOLERANCE[dtype]
    assert rel_err(steps_fla, steps_torch) < GPU_TOLERANCE[dtype]
    for layer_fla, layer_torch in zip(state_fla, state_torch):
        assert layer_fla[0].dtype == torch.float32
        assert rel_err(layer_fla[0], layer_torch[0]) < GPU_TOLERANCE[dtype]
