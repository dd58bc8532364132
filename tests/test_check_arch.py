"""The conformance checker catches each broken fixture by name; every shipped backbone passes;
build_backbone is deterministic and leaves the global RNG alone; the CLI reports bad input in one line."""

from __future__ import annotations

import importlib

import fixtures_arch
import pytest
import torch

from architectures import REGISTRY, BackboneError, build_backbone, count_parameters
from bench.check_arch import check_backbone
from bench.cli import main as cli_main
from bench.errors import BenchError

LONG_STEPS = 16_384  # as the CLI default, for the shipped backbones
FIXTURE_LONG_STEPS = 2048  # the fixtures step in a Python loop; Explodes overflows after ~220 steps


def failures(results) -> list[str]:
    return [r.name for r in results if not r.passed]


def test_honest_fixture_passes_every_check():
    results = check_backbone(fixtures_arch.RunningSum, "tiny", long_steps=FIXTURE_LONG_STEPS)
    assert failures(results) == []
    assert [r.name for r in results] == [
        "causality",
        "chunk consistency",
        "step consistency",
        "gradients",
        "long sequence",
        "parameter budget",
        "state size",
    ]


@pytest.mark.parametrize(
    "fixture, broken",
    [
        (fixtures_arch.LooksAhead, "causality"),
        (fixtures_arch.StepIgnoresState, "step consistency"),
        (fixtures_arch.UnusedParameter, "gradients"),
        (fixtures_arch.Explodes, "long sequence"),
        (fixtures_arch.OverBudget, "parameter budget"),
    ],
)
def test_broken_fixture_fails_first_on_its_property(fixture, broken):
    results = check_backbone(fixture, "tiny", long_steps=FIXTURE_LONG_STEPS)
    assert failures(results)[0] == broken


def test_failure_details_name_the_problem():
    by_name = {r.name: r for r in check_backbone(fixtures_arch.LooksAhead, "tiny", long_steps=FIXTURE_LONG_STEPS)}
    assert "t=19 changed" in by_name["causality"].detail  # the step just before the perturbation
    by_name = {r.name: r for r in check_backbone(fixtures_arch.UnusedParameter, "tiny", long_steps=FIXTURE_LONG_STEPS)}
    assert "unused" in by_name["gradients"].detail


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
        (["check-arch", "fixtures_arch:LooksAhead", "--long-steps", "2048"], 1, "FAILED: causality"),
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
