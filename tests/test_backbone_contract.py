"""The backbone contract, checked the same way for every shipped backbone: small models in float64
(several configurations where a backbone has optional parts), so that chunked, piecewise and
step-by-step computation must agree to rounding. `bench check-arch` checks the same properties at
the tiny size in float32 (tests/test_check_arch.py); the op-level and backbone-specific tests stay
in each backbone's own test file."""

from __future__ import annotations

import pytest
import torch

from architectures import REGISTRY, SIZES, BackboneError, count_parameters, resolve
from architectures.base import Backbone, State, map_state
from architectures.rwkv7 import RWKV7
from bench.presets import PRESETS, backbone_size

D_MODEL = 32
SMALL: dict[str, tuple[str, dict]] = {
    # case: (registered backbone, constructor keyword arguments besides d_model and seed)
    "gdn": ("gdn", dict(n_layers=2, n_heads=2, chunk_size=8)),
    "gdn-plain": (
        "gdn",
        dict(n_layers=2, n_heads=2, chunk_size=8, use_short_conv=False, use_gate=False, allow_neg_eigval=True),
    ),
    "gsa": ("gsa", dict(n_layers=2, n_heads=4, n_kv_heads=2, n_slots=8, chunk_size=8)),
    "gsa-conv": ("gsa", dict(n_layers=2, n_heads=4, n_kv_heads=2, n_slots=8, chunk_size=8, use_short_conv=True)),
    "rwkv7": ("rwkv7", dict(n_layers=3, n_heads=4, chunk_size=8)),
    "mamba2": ("mamba2", dict(n_layers=2, head_dim=8, d_state=6, n_groups=2, mlp_hidden=48, chunk_size=8)),
    "mamba2-no-mlp": (
        "mamba2",
        dict(n_layers=2, head_dim=8, d_state=6, n_groups=2, mlp_hidden=0, chunk_size=8, norm_before_gate=True),
    ),
    "lstm": ("lstm", dict(n_layers=2, mlp_hidden=24)),
    "transformer": ("transformer", dict(n_layers=2, n_heads=4, window=6, block_size=4, mlp_hidden=24)),
}
CASES = list(SMALL)


def test_every_registered_backbone_has_a_case():
    assert {name for name, _ in SMALL.values()} == set(REGISTRY)


def small_model(case: str, seed: int = 1, dtype: torch.dtype = torch.float64) -> Backbone:
    """The case's model with every parameter nudged off its initialisation: zero-initialised
    projections (RWKV-7's output projection) would make blocks identities and the checks vacuous."""
    name, kwargs = SMALL[case]
    model = resolve(name)(D_MODEL, seed=seed, **kwargs).to(dtype)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator).to(dtype))
    return model


def start_state(model: Backbone, batch: int, dtype: torch.dtype = torch.float64) -> State:
    return map_state(model.init_state(batch), lambda t: t.to(dtype) if t.is_floating_point() else t)


def inputs(batch: int, length: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(batch, length, D_MODEL, generator=torch.Generator().manual_seed(5)).to(dtype)


def leaves(state: State) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    map_state(state, found.append)
    return found


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


def assert_states_close(got: State, want: State, tolerance: float) -> None:
    for a, b in zip(leaves(got), leaves(want), strict=True):
        if a.is_floating_point():
            assert rel_err(a, b) < tolerance
        else:
            assert torch.equal(a, b)


@pytest.mark.parametrize("case", CASES)
def test_forward_equals_step_loop(case):
    model, x = small_model(case), inputs(2, 21)
    y, state = model(x, start_state(model, 2))
    steps, step_state = [], start_state(model, 2)
    for t in range(x.shape[1]):
        y_t, step_state = model.step(x[:, t], step_state)
        steps.append(y_t)
    assert rel_err(torch.stack(steps, 1), y) < 1e-10
    assert_states_close(step_state, state, 1e-10)


@pytest.mark.parametrize("case", CASES)
def test_forward_equals_pieces_with_carried_state(case):
    model, x = small_model(case), inputs(2, 40)
    y, state = model(x, start_state(model, 2))
    carried, pieces = start_state(model, 2), []
    for part in x.split([1, 2, 13, 24], dim=1):  # against chunks / blocks of 4-8 steps
        y_part, carried = model(part, carried)
        pieces.append(y_part)
    assert rel_err(torch.cat(pieces, 1), y) < 1e-12
    assert_states_close(carried, state, 1e-12)


@pytest.mark.parametrize("case", CASES)
def test_causal(case):
    model, x = small_model(case), inputs(1, 24)
    perturbed = x.clone()
    perturbed[:, 10:] += torch.randn(1, 14, D_MODEL, generator=torch.Generator().manual_seed(6), dtype=x.dtype)
    y, _ = model(x, start_state(model, 1))
    y_perturbed, _ = model(perturbed, start_state(model, 1))
    assert torch.equal(y[:, :10], y_perturbed[:, :10])
    assert not torch.allclose(y[:, 10:], y_perturbed[:, 10:])


@pytest.mark.parametrize("case", CASES)
def test_gradients_reach_every_parameter(case):
    model = small_model(case)
    y, state = model(inputs(2, 19), start_state(model, 2))
    (y.square().sum() + sum(t.sum() for t in leaves(state) if t.is_floating_point())).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("case", CASES)
def test_bf16_autocast_runs_close_to_float32_and_keeps_a_float32_state(case):
    model, x = small_model(case, dtype=torch.float32), inputs(2, 19, torch.float32)
    y, _ = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_bf16, state_bf16 = model(x)
        y_step, _ = model.step(x[:, 0], model.init_state(2))
    assert all(t.dtype == torch.float32 for t in leaves(state_bf16) if t.is_floating_point())
    assert rel_err(y_bf16, y) < 5e-2
    assert rel_err(y_step, y[:, 0]) < 5e-2


@pytest.mark.parametrize("case", CASES)
def test_state_size_counts_the_state(case):
    model = small_model(case)
    assert sum(t.numel() for t in leaves(model.init_state(3)) if t.is_floating_point()) == 3 * model.state_size()


@pytest.mark.parametrize("case", CASES)
def test_seed_fixes_the_weights(case):
    name, kwargs = SMALL[case]
    a, b, c = (resolve(name)(D_MODEL, seed=seed, **kwargs) for seed in (3, 3, 4))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_every_registered_backbone_has_a_size_for_every_preset():
    assert set(SIZES) == set(REGISTRY)
    needed = {backbone_size(preset) for preset in PRESETS.values()}  # smoke builds at tiny's size
    assert all(set(sizes) == needed for sizes in SIZES.values())


@pytest.mark.parametrize("name, preset", [(name, size) for name, sizes in SIZES.items() for size in sizes])
def test_every_size_constructs_within_its_preset_budget(name, preset, monkeypatch):
    cls = resolve(name)
    if cls is RWKV7:  # counts only: skip RWKV-7's orthogonal initialisation, slow at the paper size
        monkeypatch.setattr(RWKV7, "reset_parameters", lambda self, generator: None)
    spec = PRESETS[preset]
    model = cls(spec.d_model, **SIZES[name][preset])
    assert abs(count_parameters(model) / spec.param_budget - 1) <= spec.param_tolerance


@pytest.mark.parametrize("case", CASES)
def test_bad_input_shapes_are_backbone_errors(case):
    model = small_model(case, dtype=torch.float32)
    with pytest.raises(BackboneError, match=rf"expected \(B, L, {D_MODEL}\)"):
        model(torch.zeros(2, 5, D_MODEL - 1))
    with pytest.raises(BackboneError, match=rf"expected \(B, {D_MODEL}\)"):
        model.step(torch.zeros(2, 1, D_MODEL), model.init_state(2))
