"""The conformance checker catches each broken fixture by the property it breaks, in a sentence; every
shipped backbone passes (bf16 autocast included); build_backbone is deterministic and leaves the global
RNG alone; the CLI reports bad input in one line."""

from __future__ import annotations

import importlib
import re

import fixtures_arch
import pytest
import torch

from architectures import REGISTRY, BackboneError, build_backbone, count_parameters
from bench.check_arch import check_backbone, failure_sentence
from bench.cli import main as cli_main
from bench.errors import BenchError

LONG_STEPS = 16_384  # as the CLI default, for the shipped backbones
FIXTURE_LONG_STEPS = 2048  # the fixtures step in a Python loop; Explodes overflows after ~220 steps
ALL_CHECKS = [
    "interface",
    "causality",
    "chunk consistency",
    "step consistency",
    "gradients",
    "bf16 autocast",
    "long sequence",
    "parameter budget",
    "state size",
]


def failures(results) -> list[str]:
    return [r.name for r in results if not r.passed]


def test_honest_fixture_passes_every_check():
    results = check_backbone(fixtures_arch.RunningSum, "tiny", long_steps=FIXTURE_LONG_STEPS)
    assert failures(results) == []
    assert [r.name for r in results] == ALL_CHECKS
    assert failure_sentence(results) is None


@pytest.mark.parametrize(
    "fixture, broken, phrase",
    [
        (fixtures_arch.ReturnsOnlyOutput, "interface", "forward must return (y, state), got a single tensor"),
        (fixtures_arch.WideOutput, "interface", "forward output has width 256, expected d_model=128"),
        (fixtures_arch.DropsLastStep, "interface", "expected L=20 outputs, got 19"),
        (fixtures_arch.LayerFirstState, "interface", "state is not batch-first: state[0] has shape (1, 1, 128)"),
        (fixtures_arch.StepWrongShape, "interface", "step output has shape (2, 1, 128), expected (B, D) = (2, 128)"),
        (fixtures_arch.FloatInitState, "interface", "init_state(1) holds a float at state[0]"),
        (fixtures_arch.MakesNaN, "interface", "forward output has NaN or inf"),
        (fixtures_arch.NoneIsNotInitState, "interface", "state=None must mean init_state"),
        (fixtures_arch.LooksAhead, "causality", "output at t=19 changed"),  # the step just before the perturbation
        (fixtures_arch.ForwardIgnoresState, "chunk consistency", "`forward` ignores `state`"),
        (fixtures_arch.ReturnsFirstState, "chunk consistency", "the state is carried incorrectly (output rel err"),
        (fixtures_arch.StepIgnoresState, "step consistency", "`step` ignores `state`"),
        (fixtures_arch.UnusedParameter, "gradients", "no gradient reaches unused"),
        (fixtures_arch.BF16State, "bf16 autocast", "state[0] of the carried state is torch.bfloat16, not float32"),
        (fixtures_arch.NaNInBF16, "bf16 autocast", "under bf16 autocast the output has NaN or inf"),
        (fixtures_arch.CancelsInBF16, "bf16 autocast", "under bf16 autocast the output differs from float32"),
        (fixtures_arch.Explodes, "long sequence", "output becomes NaN or inf within steps 0..511"),
        (fixtures_arch.OverBudget, "parameter budget", "800,940 parameters is +100.2% off the tiny budget"),
        (fixtures_arch.MiscountsState, "state size", "state_size() returns 256 but init_state(1) holds 128"),
    ],
)
def test_broken_fixture_fails_first_on_its_property_with_a_sentence(fixture, broken, phrase):
    results = check_backbone(fixture, "tiny", quick=True)
    sentence = failure_sentence(results)
    assert failures(results)[0] == broken
    assert sentence.startswith(f"{broken}: ") and phrase in sentence
    assert "\n" not in sentence


def test_a_failed_interface_stops_the_later_checks():
    results = check_backbone(fixtures_arch.ReturnsOnlyOutput, "tiny")
    assert [(r.name, r.passed) for r in results] == [("interface", False)]


def test_quick_caps_the_long_sequence_and_overrides_reach_the_constructor():
    by_name = {r.name: r for r in check_backbone(fixtures_arch.RunningSum, "tiny", quick=True)}
    assert list(by_name) == ALL_CHECKS
    assert by_name["long sequence"].detail.startswith("512 steps finite")
    results = check_backbone(fixtures_arch.RunningSum, "tiny", overrides={"hidden": 2 * fixtures_arch.TINY_HIDDEN})
    assert failures(results) == ["parameter budget"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"long_steps": 0}, "long_steps=0; accepted: an integer >= 1"),
        ({"seed": -1}, "seed=-1; accepted: an integer from 0 to 2**63 - 1"),
    ],
)
def test_nonsense_options_are_refused(kwargs, message):
    with pytest.raises(BenchError, match=re.escape(message)):
        check_backbone(fixtures_arch.RunningSum, "tiny", **kwargs)


def _module_missing(target: str) -> bool:
    module_name = target.partition(":")[0]
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            return True
        raise
    return False


@pytest.mark.parametrize("name", list(REGISTRY))
def test_registered_backbone_passes(name):
    if _module_missing(REGISTRY[name]):
        pytest.skip(f"{REGISTRY[name]} is not written yet")
    results = check_backbone(name, "tiny", long_steps=LONG_STEPS)
    assert [r.name for r in results] == ALL_CHECKS  # bf16 autocast included
    assert failures(results) == [], [r for r in results if not r.passed]


def test_build_backbone_is_deterministic_and_keeps_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_backbone("lstm", 128, "tiny", seed=7)
    assert torch.equal(torch.rand(3), expected)
    b, c = build_backbone("lstm", 128, "tiny", seed=7), build_backbone("lstm", 128, "tiny", seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.blocks[0].rnn.weight_ih_l0, c.blocks[0].rnn.weight_ih_l0)


def test_build_backbone_uses_size_and_overrides():
    model = build_backbone("transformer", 256, "small", n_layers=1, window=16)
    assert (model.d_model, model.n_layers, model.window) == (256, 1, 16)
    assert count_parameters(build_backbone(fixtures_arch.RunningSum, 128, "tiny")) == 400_534


def test_build_backbone_without_a_size_needs_every_argument():
    with pytest.raises(BackboneError, match="has no settings for size 'tiny'"):
        build_backbone(fixtures_arch.NoPresets, 128, "tiny")
    assert build_backbone(fixtures_arch.NoPresets, 128, n_layers=1).n_layers == 1
    with pytest.raises(BackboneError, match="has no settings for size 'huge'"):
        build_backbone("lstm", 128, "huge")
    with pytest.raises(BenchError, match="unknown preset 'huge'"):
        check_backbone("lstm", "huge")
    with pytest.raises(BackboneError, match="cannot construct"):
        build_backbone("lstm", 128, "tiny", n_heads=4)


@pytest.mark.parametrize(
    "argv, rc, message",
    [
        (["check-arch", "nope"], 2, "registered: rwkv7, gdn, gsa, mamba2, transformer, lstm"),
        (["check-arch", "no_such_module:Thing"], 2, "cannot import module 'no_such_module'"),
        (["check-arch", "fixtures_arch:NotABackbone"], 2, "does not satisfy the backbone contract: missing step"),
        (["check-arch", "fixtures_arch:LooksAhead", "--long-steps", "2048"], 1, "FAILED: causality: output at t=19"),
        (["check-arch", "fixtures_arch:ReturnsOnlyOutput"], 1, "FAILED: interface: forward must return (y, state)"),
        (["check-arch", "lstm", "--long-steps", "0"], 2, "error: long_steps=0; accepted: an integer >= 1"),
        (["check-arch", "lstm", "--seed", "-3"], 2, "error: seed=-3; accepted"),
        (["check-arch", "fixtures_arch:RunningSum", "--long-steps", "2048"], 0, ""),
    ],
)
def test_cli_exit_codes_and_messages(argv, rc, message, capsys):
    assert cli_main(argv) == rc
    captured = capsys.readouterr()
    assert message in captured.err
    if rc == 0:
        assert "all checks passed" in captured.out
    else:
        assert len(captured.err.strip().splitlines()) == 1
