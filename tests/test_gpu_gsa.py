"""fla's Triton GSA kernels against our PyTorch path, on the same weights and inputs (CUDA only)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from architectures.gsa import GatedSlotAttention
from architectures.ops.gsa import fla_available, gsa

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(not fla_available(), reason="needs fla (pip install -e '.[gpu]')"),
]

TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 1e-2}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def op_inputs(length: int, dtype: torch.dtype, seed: int = 0):
    """GSA inputs as the layer makes them (swish q/k, silu v, g = logsigmoid(f) / 8, s = 1 - exp(g))."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    batch, q_heads, kv_heads, d_k, d_v, slots = 2, 4, 2, 32, 32, 16

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device="cuda")

    q, k = F.silu(randn(batch, length, q_heads, d_k)), F.silu(randn(batch, length, kv_heads, d_k))
    v = F.silu(randn(batch, length, kv_heads, d_v))
    g = F.logsigmoid(randn(batch, length, kv_heads, slots)) / 8
    s = -torch.expm1(g)
    state = (randn(batch, kv_heads, d_k, slots), 0.1 * randn(batch, kv_heads, slots, d_v))
    return (q.to(dtype), k.to(dtype), v.to(dtype), s.to(dtype), g), state


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode, length", [("chunk", 100), ("chunk", 1), ("recurrent", 1), ("recurrent", 7)])
def test_op_fla_matches_torch(dtype, mode, length):
    inputs, state = op_inputs(length, dtype)
    o_fla, state_fla = gsa(*inputs, scale=1.0, initial_state=state, mode=mode, use_fla=True)
    o_torch, state_torch = gsa(*(x.float() for x in inputs), scale=1.0, initial_state=state, mode=mode, use_fla=False)
    assert o_fla.shape == o_torch.shape
    assert rel_err(o_fla, o_torch) < TOLERANCE[dtype]
    for got, want in zip(state_fla, state_torch):
        assert got.shape == want.shape
        assert rel_err(got, want) < TOLERANCE[dtype]


def test_op_fla_gradients_match_torch():
    # fla's kernels run float32 dots in TF32, so gradients get the bf16 tolerance.
    inputs, state = op_inputs(100, torch.float32, seed=1)
    weights = torch.randn(2, 100, 4, 32, generator=torch.Generator(device="cuda").manual_seed(2), device="cuda")

    def grads(use_fla: bool):
        leaves = [x.clone().requires_grad_() for x in (*inputs, *state)]
        o, (hk, hv) = gsa(*leaves[:5], scale=1.0, initial_state=tuple(leaves[5:]), use_fla=use_fla)
        ((o * weights).sum() + hk.sum() + hv.sum()).backward()
        return [x.grad for x in leaves]

    for got, want in zip(grads(True), grads(False)):
        assert rel_err(got, want) < 1e-2


def models() -> tuple[GatedSlotAttention, GatedSlotAttention]:
    config = dict(n_heads=4, n_kv_heads=2, n_slots=16, seed=3)
    with_fla = GatedSlotAttention(128, 2, **config).cuda()
    without = GatedSlotAttention(128, 2, use_fla=False, **config).cuda()
    without.load_state_dict(with_fla.state_dict())
    return with_fla, without


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backbone_fla_matches_torch(dtype):
    with_fla, without = models()
    x = torch.randn(2, 100, 128, generator=torch.Generator(device="cuda").manual_seed(4), device="cuda")
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
    assert rel_err(y_fla, y_torch) < TOLERANCE[dtype]
    assert rel_err(steps_fla, steps_torch) < TOLERANCE[dtype]
    for layer_fla, layer_torch in zip(state_fla, state_torch):
        for got, want in zip(layer_fla, layer_torch):
            assert got.dtype == torch.float32
            assert rel_err(got, want) < TOLERANCE[dtype]
