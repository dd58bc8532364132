"""Mamba2: the chunked SSD scan against the plain recurrence, and the backbone contract."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from architectures import SIZES, BackboneError, resolve
from architectures.mamba2 import Mamba2
from architectures.ops.mamba2 import (
    MAMBA_SSM_CHUNK,
    fla_available,
    mamba_ssm_available,
    segment_sums,
    ssd,
    ssd_chunked,
    ssd_mamba_ssm,
    ssd_recurrent,
    ssd_reference,
)
from bench.presets import PRESETS


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def op_inputs(
    seed: int, batch=2, length=45, heads=4, head_dim=6, groups=2, d_state=5, dt_scale=1.0, dtype=torch.float64
):
    """Random SSD inputs shaped as the mixer makes them: dt = softplus(.) > 0, A = -exp(A_log) in [-17, -1]."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    x = randn(batch, length, heads, head_dim)
    dt = F.softplus(randn(batch, length, heads)) * dt_scale
    A = -1 - 16 * torch.rand(heads, generator=gen, dtype=dtype)
    B, C = randn(batch, length, groups, d_state), randn(batch, length, groups, d_state)
    state = randn(batch, heads, head_dim, d_state)
    return (x, dt, A, B, C), state


def test_segment_sums_are_sums_of_the_segment():
    a = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    sums = segment_sums(a)
    assert sums[3, 1].item() == 4.0 + 8.0 and sums[2, 2].item() == 0.0
    assert torch.isneginf(sums.triu(1)[0, 1]) and torch.isneginf(sums[0, 3])


@pytest.mark.parametrize("chunk_size", [1, 8, 16, 64])
@pytest.mark.parametrize("dt_scale", [1.0, 100.0])  # 100: decays of e^-100 and beyond per step
def test_chunked_matches_reference(chunk_size, dt_scale):
    inputs, state = op_inputs(0, dt_scale=dt_scale)
    y_ref, h_ref = ssd_reference(*inputs, initial_state=state)
    y, h = ssd_chunked(*inputs, initial_state=state, chunk_size=chunk_size)
    assert y.shape == y_ref.shape == (2, 45, 4, 6) and h.shape == h_ref.shape == (2, 4, 6, 5)
    assert rel_err(y, y_ref) < 1e-12
    assert rel_err(h, h_ref) < 1e-12


@pytest.mark.parametrize("groups", [1, 4])
def test_recurrent_matches_reference_and_zero_initial_state(groups):
    inputs, _ = op_inputs(1, groups=groups)
    y_ref, h_ref = ssd_reference(*inputs)
    y, h = ssd_recurrent(*inputs)
    y_chunk, h_chunk = ssd_chunked(*inputs, chunk_size=16)
    for got in (y, y_chunk):
        assert rel_err(got, y_ref) < 1e-12
    for got in (h, h_chunk):
        assert rel_err(got, h_ref) < 1e-12


def test_reference_is_the_discretised_ssm():
    # One head, one state dim, scalars: h_1 = dt x B, h_2 = exp(dt A) h_1 + dt x B, y = h C.
    x = torch.tensor([2.0, 3.0], dtype=torch.float64).view(1, 2, 1, 1)
    dt = torch.tensor([0.5, 0.25], dtype=torch.float64).view(1, 2, 1)
    A = torch.tensor([-2.0], dtype=torch.float64)
    B = torch.tensor([1.0, 4.0], dtype=torch.float64).view(1, 2, 1, 1)
    C = torch.tensor([3.0, 0.5], dtype=torch.float64).view(1, 2, 1, 1)
    y, h = ssd_reference(x, dt, A, B, C)
    h1 = 0.5 * 2.0 * 1.0
    h2 = math.exp(-0.5) * h1 + 0.25 * 3.0 * 4.0
    assert torch.allclose(y.flatten(), torch.tensor([h1 * 3.0, h2 * 0.5], dtype=torch.float64))
    assert h.item() == pytest.approx(h2)


@pytest.mark.parametrize("dt_scale", [1.0, 30.0])
def test_chunked_gradients_match_reference(dt_scale):
    inputs, state = op_inputs(2, batch=1, length=21, dt_scale=dt_scale)
    weights = torch.randn(1, 21, 4, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    def grads(fn, **kwargs):
        leaves = [t.clone().requires_grad_() for t in (*inputs, state)]
        y, h = fn(*leaves[:5], initial_state=leaves[5], **kwargs)
        ((y * weights).sum() + h.square().sum()).backward()
        return [t.grad for t in leaves]

    for got, want in zip(grads(ssd_chunked, chunk_size=8), grads(ssd_reference)):
        assert torch.isfinite(got).all()
        assert rel_err(got, want) < 1e-10


@pytest.mark.parametrize("dt_scale", [1.0, 1000.0])
def test_chunked_float32_is_accurate(dt_scale):
    inputs, state = op_inputs(3, length=200, dt_scale=dt_scale)
    y_ref, h_ref = ssd_reference(*inputs, initial_state=state)
    y, h = ssd_chunked(*(t.float() for t in inputs), initial_state=state.float(), chunk_size=64)
    assert y.dtype == h.dtype == torch.float32
    assert rel_err(y, y_ref) < 1e-5 and rel_err(h, h_ref) < 1e-5


def test_op_rejects_bad_inputs():
    (x, dt, A, B, C), state = op_inputs(4)
    with pytest.raises(BackboneError, match="dt has shape"):
        ssd_chunked(x, dt[..., :3], A, B, C)
    with pytest.raises(BackboneError, match="not a multiple of 3 groups"):
        ssd_chunked(x, dt, A, B.repeat(1, 1, 2, 1)[:, :, :3], C.repeat(1, 1, 2, 1)[:, :, :3])
    with pytest.raises(BackboneError, match="initial state"):
        ssd_chunked(x, dt, A, B, C, initial_state=state[:, :1])
    with pytest.raises(BackboneError, match="chunk_size=0"):
        ssd_chunked(x, dt, A, B, C, chunk_size=0)
    with pytest.raises(BackboneError, match="unknown mode"):
        ssd(x, dt, A, B, C, mode="scan")


def small_model(**kwargs) -> Mamba2:
    config = dict(head_dim=8, d_state=6, n_groups=2, mlp_hidden=48, chunk_size=8, seed=1)
    config.update(kwargs)
    return Mamba2(32, 2, **config)


def inputs(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return 3 * torch.randn(batch, length, 32, generator=torch.Generator().manual_seed(seed))


def max_state_err(a, b) -> float:
    return max(rel_err(x, y) for layer_a, layer_b in zip(a, b) for x, y in zip(layer_a, layer_b))


def test_chunk_size_does_not_change_the_output():
    x = inputs(2, 50).double()
    y_ref, state_ref = small_model(chunk_size=1).double()(x)
    for chunk_size in (7, 64, 96):
        y, state = small_model(chunk_size=chunk_size).double()(x)
        assert rel_err(y, y_ref) < 1e-12
        assert max_state_err(state, state_ref) < 1e-12


def test_long_sequence_at_init_is_finite():
    spec = PRESETS["tiny"]
    model = Mamba2(spec.d_model, **SIZES["mamba2"]["tiny"])
    x = torch.randn(1, 16384, spec.d_model, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        y, state = model(x)
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(h).all() for layer in state for h in layer)


def test_norm_before_gate_changes_the_output():
    x = inputs(1, 9)
    assert not torch.allclose(small_model()(x)[0], small_model(norm_before_gate=True)(x)[0])


def test_state_size_formula():
    # per layer: d_inner 64 x d_state 6 (SSM) + 3 x (64 + 2 groups x 2 x 6) (convolution cache)
    assert small_model().state_size() == 2 * (64 * 6 + 3 * (64 + 24))


def test_init_follows_the_reference():
    model = Mamba2(256, 4, d_state=16, mlp_hidden=0, seed=0)
    mixers = [block.mixer for block in model.blocks]
    assert abs(mixers[0].in_proj.weight.std().item() - 0.02) < 0.001
    dt = torch.cat([F.softplus(m.dt_bias) for m in mixers])
    minus_A = torch.cat([m.A_log.exp() for m in mixers])
    assert dt.min() >= 0.001 - 1e-6 and dt.max() <= 0.1 + 1e-6
    assert minus_A.min() >= 1.0 and minus_A.max() <= 16.0 and minus_A.std() > 2.0
    assert all(torch.equal(m.D, torch.ones_like(m.D)) for m in mixers)
    bound = 1 / math.sqrt(512) / math.sqrt(4)  # out_proj: U(+-1/sqrt(d_inner)) / sqrt(n_layers)
    assert mixers[0].out_proj.weight.abs().max() <= bound
    assert mixers[0].out_proj.weight.abs().max() > 0.9 * bound


def test_registered_and_heads_follow_fla():
    assert resolve("mamba2") is Mamba2
    mixer = Mamba2(128, 1).blocks[0].mixer  # fla: num_heads = expand * hidden_size / head_dim
    assert (mixer.d_inner, mixer.n_heads, mixer.head_dim, mixer.d_state) == (256, 4, 64, 128)
    assert Mamba2(128, 1, n_heads=8).blocks[0].mixer.head_dim == 32
    assert Mamba2(128, 1, mlp_hidden=0).blocks[0].mlp is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"head_dim": 7}, "head_dim=7"),
        ({"n_heads": 5}, "n_heads=5"),
        ({"n_heads": 4, "head_dim": 8}, "disagree"),
        ({"n_groups": 3}, "n_groups=3"),
        ({"expand": 0}, "expand=0"),
        ({"d_state": 0}, "d_state=0"),
        ({"conv_size": 1}, "conv_size=1"),
        ({"mlp_hidden": -1}, "mlp_hidden=-1"),
        ({"dt_min": 0.2}, "dt_min=0.2"),
        ({"A_init_range": (0.0, 16.0)}, "A_init_range"),
        ({"chunk_size": 0}, "chunk_size=0"),
    ],
)
def test_bad_configuration_is_a_backbone_error(kwargs, message):
    with pytest.raises(BackboneError, match=message):
        small_model(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(not fla_available(), reason="needs fla (pip install -e '.[gpu]')")
@pytest.mark.parametrize("mode, length", [("chunk", 100), ("chunk", 1), ("recurrent", 1), ("recurrent", 7)])
def test_fla_matches_torch_on_cuda(mode, length):
    """fla's simple-GLA kernels against our PyTorch scan, op and backbone, same weights and inputs."""
    inputs, state = op_inputs(7, length=length, head_dim=64, d_state=32, groups=1, dtype=torch.float32)
    inputs, state = tuple(t.cuda() for t in inputs), state.cuda()
    y_fla, h_fla = ssd(*inputs, initial_state=state, mode=mode, use_fla=True)
    y_torch, h_torch = ssd(*inputs, initial_state=state, mode=mode, use_fla=False)
    assert rel_err(y_fla, y_torch) < 1e-3 and rel_err(h_fla, h_torch) < 1e-3

    with_fla = Mamba2(128, 2, d_state=32, mlp_hidden=0, seed=3).cuda()
    without = Mamba2(128, 2, d_state=32, mlp_hidden=0, seed=3, use_fla=False).cuda()
    x = torch.randn(2, 100, 128, generator=torch.Generator(device="cuda").manual_seed(4), device="cuda")
    (y_a, state_a), (y_b, state_b) = with_fla(x), without(x)
    assert rel_err(y_a, y_b) < 1e-3
    assert max_state_err(state_a, state_b) < 1e-3
    (s_a, _), (s_b, _) = with_fla.step(x[:, 0], state_a), without.step(x[:, 0], state_b)
    assert rel_err(s_a, s_b) < 1e-3


# --- the kernel switch: torch, fla, mamba_ssm -------------------------------------------------------


def test_kernel_switch_keeps_parameters_and_accepts_use_fla():
    default, torch_kernel = small_model(), small_model(kernel="torch")
    assert default.blocks[0].mixer.kernel == "fla" and torch_kernel.blocks[0].mixer.kernel == "torch"
    assert small_model(use_fla=False).blocks[0].mixer.kernel == "torch"
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), torch_kernel.state_dict().values()))
    x = inputs(2, 20)
    assert torch.equal(default(x)[0], torch_kernel(x)[0])  # on CPU every kernel is the PyTorch path


def test_unknown_kernel_is_a_backbone_error():
    with pytest.raises(BackboneError, match="kernel='triton'; accepted: torch, fla, mamba_ssm"):
        small_model(kernel="triton")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where no GPU is visible")
def test_mamba_ssm_kernel_without_cuda_is_a_one_line_error():
    with pytest.raises(BackboneError, match=r"kernel='mamba_ssm' needs a CUDA GPU; none is visible here") as err:
        small_model(kernel="mamba_ssm")
    assert "\n" not in str(err.value)
    (x, dt, A, B, C), _ = op_inputs(0)
    with pytest.raises(BackboneError, match="needs a CUDA GPU"):
        ssd(x, dt, A, B, C, kernel="mamba_ssm")


def stand_in_scan(
    x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None, dt_softplus=False, **options
):
    """mamba_chunk_scan_combined's contract as its docstring states it (x (b, l, h, p), dt (b, l, h),
    A (h,), B, C (b, l, g, n), initial_states (b, h, p, n); with return_final_states it returns
    (out (b, l, h, p), final_states float32)), computed by our plain reference."""
    assert options == {"return_final_states": True} and chunk_size == MAMBA_SSM_CHUNK
    assert D is None and z is None and dt_bias is None and not dt_softplus
    assert dt.dtype == A.dtype == torch.float32 and B.dtype == C.dtype == x.dtype
    assert initial_states is None or initial_states.dtype == torch.float32
    y, state = ssd_reference(x, dt, A, B, C, initial_states)
    return y.to(x.dtype), state.float()


@pytest.mark.parametrize("with_state", [True, False])
def test_mamba_ssm_call_maps_our_arguments_onto_the_kernels(with_state):
    """The call `ssd_mamba_ssm` makes, checked on the CPU against a stand-in with the kernel's signature."""
    (x, dt, A, B, C), state = op_inputs(3, dtype=torch.float32)
    initial = state if with_state else None
    y, h = ssd_mamba_ssm(stand_in_scan, x, dt, A, B, C, initial)
    y_ref, h_ref = ssd_chunked(x, dt, A, B, C, initial)
    assert y.dtype == x.dtype and h.dtype == torch.float32
    assert rel_err(y, y_ref) < 1e-5 and rel_err(h, h_ref) < 1e-5


# mamba-ssm's SSD kernel against our PyTorch path (CUDA with mamba-ssm installed only).
needs_mamba_ssm = pytest.mark.skipif(
    not mamba_ssm_available(), reason="needs CUDA and mamba-ssm (pip install --no-build-isolation -e '.[mamba]')"
)
MAMBA_SSM_TOLERANCE = {torch.float32: (2e-3, 1e-2), torch.bfloat16: (2e-2, 5e-2)}
"""(outputs and states, gradients): the kernel's float32 dots run in TF32."""


@pytest.mark.gpu
@needs_mamba_ssm
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("length, groups", [(1, 1), (100, 1), (300, 1), (300, 2)])
def test_mamba_ssm_op_matches_torch_on_cuda(dtype, length, groups):
    """Outputs, final state and the gradients of every input (initial state included), with x, B, C
    in `dtype` as the mixer gives them under autocast and dt, A, the state in float32."""
    inputs, state = op_inputs(8, length=length, heads=8, head_dim=64, groups=groups, d_state=64, dtype=torch.float32)
    probe = torch.randn(2, length, 8, 64, generator=torch.Generator().manual_seed(9)).cuda()
    probe_state = torch.randn(state.shape, generator=torch.Generator().manual_seed(10)).cuda()

    def run(kernel: str):
        leaves = [t.cuda().requires_grad_() for t in (*inputs, state)]
        x, dt, A, B, C, h0 = leaves
        y, h = ssd(x.to(dtype), dt, A, B.to(dtype), C.to(dtype), initial_state=h0, kernel=kernel)
        ((y.float() * probe).sum() + (h * probe_state).sum()).backward()
        return y, h, [t.grad for t in leaves]

    (y_k, h_k, grads_k), (y_t, h_t, grads_t) = run("mamba_ssm"), run("torch")
    close, close_grads = MAMBA_SSM_TOLERANCE[dtype]
    assert y_k.dtype == dtype and h_k.dtype == torch.float32 and y_k.shape == y_t.shape
    assert rel_err(y_k, y_t) < close and rel_err(h_k, h_t) < close
    for name, got, want in zip(("x", "dt", "A", "B", "C", "initial state"), grads_k, grads_t):
        assert rel_err(got, want) < close_grads, name


@pytest.mark.gpu
@needs_mamba_ssm
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mamba_ssm_backbone_matches_torch_on_cuda(dtype):
    """The backbone with kernel="mamba_ssm" against kernel="torch", same weights: a prefix carries the
    state into a segment (forward + backward), then one step; outputs, states, parameter gradients."""
    config = dict(n_heads=8, d_state=32, mlp_hidden=0, seed=3)
    fast, reference = (Mamba2(128, 2, kernel=kernel, **config).cuda() for kernel in ("mamba_ssm", "torch"))
    gen = torch.Generator().manual_seed(4)
    prefix, x = (torch.randn(2, n, 128, generator=gen).cuda() for n in (150, 300))
    results = []
    for model in (fast, reference):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            with torch.no_grad():
                _, state = model(prefix)
            y, state = model(x, state)
            y.float().square().mean().backward()
            step, _ = model.step(x[:, 0], state)
        grads = {name: p.grad for name, p in model.named_parameters()}
        results.append((y, state, step, grads))
    (y_k, state_k, step_k, grads_k), (y_t, state_t, step_t, grads_t) = results
    close, close_grads = MAMBA_SSM_TOLERANCE[dtype]
    assert rel_err(y_k, y_t) < close and rel_err(step_k, step_t) < close
    assert all(s.dtype == torch.float32 for layer in state_k for s in layer)
    assert max_state_err(state_k, state_t) < close
    for name, grad in grads_t.items():
        assert rel_err(grads_k[name], grad) < close_grads, name
