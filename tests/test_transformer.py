"""Transformer baseline: blockwise sliding-window attention against a plain loop, rotary positions,
the window's reach, and the backbone contract (chunk and step consistency, presets, bad input)."""

from __future__ import annotations

import pytest
import torch

from architectures import BackboneError, resolve
from architectures.ops.transformer import (
    apply_rotary,
    rotary_inverse_frequencies,
    sliding_window_attention,
    sliding_window_attention_reference,
)
from architectures.transformer import Transformer


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def op_inputs(seed: int, batch=2, length=37, heads=3, d=4, window=5):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    q, k, v = randn(batch, length, heads, d), randn(batch, length, heads, d), randn(batch, length, heads, d)
    cache = (randn(batch, heads, window, d), randn(batch, heads, window, d))
    return q, k, v, cache


@pytest.mark.parametrize("block_size", [1, 4, 16, 128])
@pytest.mark.parametrize("window, length", [(5, 37), (50, 37), (1, 1), (8, 1)])
def test_blockwise_attention_matches_reference(block_size, window, length):
    q, k, v, cache = op_inputs(0, length=length, window=window)
    start = torch.tensor([0, 3])  # a fresh sequence (masked cache) and one 3 steps in
    o, (ck, cv) = sliding_window_attention(q, k, v, cache, start, block_size=block_size)
    o_ref, (ck_ref, cv_ref) = sliding_window_attention_reference(q, k, v, cache, start)
    assert o.shape == (2, length, 3, 4)
    assert rel_err(o, o_ref) < 1e-12
    assert torch.equal(ck, ck_ref) and torch.equal(cv, cv_ref)


def test_attention_gradients_match_reference():
    q, k, v, cache = op_inputs(1, length=19)
    start = torch.tensor([2, 40])
    weights = torch.randn(2, 19, 3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def grads(fn, **kwargs):
        leaves = [x.clone().requires_grad_() for x in (q, k, v, *cache)]
        o, (ck, cv) = fn(*leaves[:3], tuple(leaves[3:]), start, **kwargs)
        ((o * weights).sum() + ck.sum() + cv.square().sum()).backward()
        return [x.grad for x in leaves]

    for got, want in zip(grads(sliding_window_attention, block_size=4), grads(sliding_window_attention_reference)):
        assert rel_err(got, want) < 1e-12


def test_rotary_scores_depend_only_on_relative_position():
    gen = torch.Generator().manual_seed(3)
    q, k = (torch.randn(1, 1, 2, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    freqs = rotary_inverse_frequencies(8, 10_000.0)

    def score(p_q: int, p_k: int) -> torch.Tensor:
        rq = apply_rotary(q, torch.tensor([[p_q]]), freqs)
        rk = apply_rotary(k, torch.tensor([[p_k]]), freqs)
        return (rq * rk).sum(-1)

    assert torch.allclose(score(7, 3), score(1007, 1003), rtol=1e-9)
    assert not torch.allclose(score(7, 3), score(7, 4))
    assert torch.allclose(apply_rotary(q, torch.tensor([[5]]), freqs).norm(), q.norm())


def small_model(**kwargs) -> Transformer:
    config = dict(n_heads=4, window=6, block_size=4, mlp_hidden=24, seed=1) | kwargs
    return Transformer(32, config.pop("n_layers", 2), **config).double()


def inputs(length: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(2, length, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_the_state_counts_positions_across_pieces():
    model, x = small_model(), inputs(29)
    state = None
    for part in x.split([1, 10, 3, 15], dim=1):
        _, state = model(part, state)
    assert state[0].tolist() == [29, 29]


def test_one_layer_sees_exactly_its_window():
    model, x = small_model(n_layers=1, window=6), inputs(20)
    y, _ = model(x)
    changed = x.clone()
    changed[:, 3] += 1.0
    y_changed, _ = model(changed)
    moved = (y_changed - y).abs().amax(dim=(0, 2)) > 0
    assert moved.tolist() == [False] * 3 + [True] * 7 + [False] * 10  # steps 3 .. 3 + window


def test_state_size_counts_the_caches():
    model = small_model(n_layers=3, window=7)
    position, caches = model.init_state(4)
    assert position.dtype == torch.long and position.shape == (4,)
    assert model.state_size() == sum(t[0].numel() for cache in caches for t in cache) == 3 * 2 * 7 * 32


def test_registered():
    assert resolve("transformer") is Transformer


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_heads": 5}, "n_heads=5"),
        ({"n_heads": 32}, "n_heads=32"),  # head dim 1 cannot be rotated in pairs
        ({"window": 0}, "window=0"),
        ({"mlp_hidden": 0}, "mlp_hidden=0"),
        ({"block_size": 0}, "block_size=0"),
        ({"n_layers": 0}, "n_layers=0"),
    ],
)
def test_bad_configuration_is_a_backbone_error(kwargs, message):
    with pytest.raises(BackboneError, match=message):
        small_model(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_autocast_keeps_float32_cache():
    cpu = Transformer(128, 2, n_heads=4, window=64, seed=2)
    gpu = Transformer(128, 2, n_heads=4, window=64, seed=2).cuda()
    x = torch.randn(2, 200, 128, generator=torch.Generator().manual_seed(6))
    y_cpu, _ = cpu(x)
    y_gpu, _ = gpu(x.cuda())
    assert rel_err(y_gpu.cpu(), y_cpu) < 1e-3  # TF32 matmuls on GPU
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y_bf16, (_, caches) = gpu(x.cuda())
    assert rel_err(y_bf16.float().cpu(), y_cpu) < 3e-2
    assert all(t.dtype == torch.float32 for cache in caches for t in cache)
