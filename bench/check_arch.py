"""`python -m bench check-arch <name or module:Class> [--preset tiny]`: the backbone conformance checks.

Builds the backbone at the preset's size on CPU in float32 and checks, in order:

1. causality: outputs before t do not change when inputs at t and later are perturbed;
2. chunk consistency: one forward equals forwards over pieces with the state carried;
3. step consistency: `step` one step at a time equals one forward (outputs and final state);
4. gradients: every parameter gets a finite gradient (through a carried state);
5. long sequence: no NaN/inf over a 16K-step sequence (chunks of 2048, state carried, no grad);
6. parameter budget: the parameter count is within the preset's tolerance of its budget;

and reports `state_size()` and the parameter count. Exits non-zero naming the first failure.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from architectures import Backbone, State, build_backbone, count_parameters
from bench.presets import DEFAULT_PRESET, PRESETS, get_preset
from bench.report.table import format_table

TOLERANCE = 1e-4
"""Relative error allowed between two forms of the same computation in float32."""
CAUSAL_TOLERANCE = 1e-6
"""Relative change allowed in outputs before the perturbed step (exactly 0 in exact arithmetic)."""
CHUNK_PIECES = (37, 1, 50, 12)
"""Segment lengths for the chunk-consistency check (odd sizes, to exercise internal padding)."""
LONG_CHUNK = 2048
"""Segment length for the long-sequence check."""
PERTURB_STD = 0.02
"""Std of the seeded noise added to every weight of the copy that the consistency checks probe."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    """The property checked, e.g. "causality"."""
    passed: bool
    """Whether the backbone has the property."""
    detail: str
    """What was measured (errors, counts), or why it failed."""


def _leaves(state: State) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [leaf for key in sorted(state) for leaf in _leaves(state[key])]
    if isinstance(state, (list, tuple)):
        return [leaf for item in state for leaf in _leaves(item)]
    return []


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach().double()
    return ((got - want).norm() / want.norm().clamp_min(1e-12)).item()


def _state_err(got: State, want: State) -> float:
    """Largest relative error over the state's leaves (inf when the structures differ)."""
    got_leaves, want_leaves = _leaves(got), _leaves(want)
    if len(got_leaves) != len(want_leaves) or any(a.shape != b.shape for a, b in zip(got_leaves, want_leaves)):
        return float("inf")
    return max((_rel_err(a, b) for a, b in zip(got_leaves, want_leaves)), default=0.0)


def _inputs(generator: torch.Generator, batch: int, length: int, d_model: int) -> torch.Tensor:
    return torch.randn(batch, length, d_model, generator=generator)


def check_causality(model: Backbone, generator: torch.Generator) -> CheckResult:
    length, cut = 48, 20
    x = _inputs(generator, 2, length, model.d_model)
    perturbed = x.clone()
    perturbed[:, cut:] = _inputs(generator, 2, length - cut, model.d_model)
    with torch.no_grad():
        y, _ = model(x)
        y_perturbed, _ = model(perturbed)
    change = (y[:, :cut] - y_perturbed[:, :cut]).abs().amax(dim=(0, 2))  # per position
    err = _rel_err(y_perturbed[:, :cut], y[:, :cut])
    if err > CAUSAL_TOLERANCE:
        first = int((change > 0).nonzero()[0])
        return CheckResult(
            "causality",
            False,
            f"output at t={first} changed (rel {err:.2e}) when inputs from t={cut} on were perturbed",
        )
    return CheckResult("causality", True, f"outputs before t={cut} unchanged (rel {err:.1e})")


def check_chunk_consistency(model: Backbone, generator: torch.Generator) -> CheckResult:
    x = _inputs(generator, 2, sum(CHUNK_PIECES), model.d_model)
    with torch.no_grad():
        y, state = model(x)
        pieces, piece_state = [], None
        for part in x.split(list(CHUNK_PIECES), dim=1):
            y_part, piece_state = model(part, piece_state)
            pieces.append(y_part)
    out_err, state_err = _rel_err(torch.cat(pieces, dim=1) - x, y - x), _state_err(piece_state, state)
    detail = f"pieces {'+'.join(map(str, CHUNK_PIECES))}: output rel err {out_err:.1e}, state rel err {state_err:.1e}"
    return CheckResult("chunk consistency", max(out_err, state_err) <= TOLERANCE, detail)


def check_step_consistency(model: Backbone, generator: torch.Generator) -> CheckResult:
    x = _inputs(generator, 2, 24, model.d_model)
    with torch.no_grad():
        y, state = model(x)
        step_state = model.init_state(2, "cpu")
        steps = []
        for t in range(x.shape[1]):
            y_t, step_state = model.step(x[:, t], step_state)
            steps.append(y_t)
    out_err, state_err = _rel_err(torch.stack(steps, dim=1) - x, y - x), _state_err(step_state, state)
    detail = f"24 steps: output rel err {out_err:.1e}, state rel err {state_err:.1e}"
    return CheckResult("step consistency", max(out_err, state_err) <= TOLERANCE, detail)


def check_gradients(model: Backbone, generator: torch.Generator) -> CheckResult:
    x = _inputs(generator, 2, 64, model.d_model)
    weights = torch.randn(x.shape, generator=generator)
    model.zero_grad(set_to_none=True)
    y_first, state = model(x[:, :32])
    y_second, _ = model(x[:, 32:], state)  # the first segment's parameters also get gradient via the state
    (torch.cat([y_first, y_second], dim=1) * weights).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    model.zero_grad(set_to_none=True)
    if missing or bad:
        problems = ([f"no gradient: {', '.join(missing[:5])}"] if missing else []) + (
            [f"non-finite gradient: {', '.join(bad[:5])}"] if bad else []
        )
        return CheckResult("gradients", False, "; ".join(problems))
    count = sum(1 for _ in model.parameters())
    return CheckResult("gradients", True, f"all {count} parameter tensors get a finite gradient")


def check_long_sequence(model: Backbone, generator: torch.Generator, steps: int) -> CheckResult:
    state, largest = None, 0.0
    with torch.no_grad():
        for start in range(0, steps, LONG_CHUNK):
            x = _inputs(generator, 1, min(LONG_CHUNK, steps - start), model.d_model)
            y, state = model(x, state)
            if not torch.isfinite(y).all():
                where = f"steps {start}..{start + x.shape[1] - 1}"
                return CheckResult("long sequence", False, f"non-finite output in {where}")
            largest = max(largest, y.abs().max().item())
    if not all(torch.isfinite(leaf).all() for leaf in _leaves(state) if leaf.is_floating_point()):
        return CheckResult("long sequence", False, f"non-finite state after {steps} steps")
    return CheckResult("long sequence", True, f"{steps} steps finite, max |y| = {largest:.3g}")


def check_parameter_budget(model: Backbone, preset: str) -> CheckResult:
    spec = get_preset(preset)
    count = count_parameters(model)
    deviation = count / spec.param_budget - 1
    detail = (
        f"{count:,} parameters, {deviation:+.1%} vs budget {spec.param_budget:,} (tolerance {spec.param_tolerance:.0%})"
    )
    return CheckResult("parameter budget", abs(deviation) <= spec.param_tolerance, detail)


def check_state_size(model: Backbone) -> CheckResult:
    size = model.state_size()
    held = sum(leaf[0].numel() for leaf in _leaves(model.init_state(1, "cpu")) if leaf.is_floating_point())
    ok = isinstance(size, int) and size > 0
    detail = f"state_size() = {size:,}; init_state(1) holds {held:,} floating-point numbers"
    return CheckResult("state size", ok, detail)


def perturbed_copy(model: Backbone, generator: torch.Generator) -> Backbone:
    """A copy with seeded N(0, PERTURB_STD^2) noise on every weight.

    Zero-initialised projections (RWKV-7's output and value, for one) make a block the identity at
    initialisation, and a consistency check of the identity cannot fail; the copy's blocks all act.
    The outputs compared are y - x (the blocks' contribution), not y, so a residual stream does not
    hide an error in what the blocks add."""
    probe = copy.deepcopy(model)
    with torch.no_grad():
        for param in probe.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * PERTURB_STD)
    return probe


def _guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except Exception as err:  # a crash is a failure of that property, reported in one line
        message = str(err).splitlines()[0] if str(err) else ""
        return CheckResult(name, False, f"raised {type(err).__name__}: {message}")


def check_backbone(
    cls_or_name: str | type[Backbone], preset: str = DEFAULT_PRESET, seed: int = 0, long_steps: int = 16_384
) -> list[CheckResult]:
    """Build the backbone for `preset` (BackboneError if it cannot be resolved or built) and run every check.

    Runs on one CPU thread: the inputs are small, and on a busy machine two threads were 10-30x
    slower than one. The caller's thread count is restored afterwards.
    """
    model = build_backbone(cls_or_name, get_preset(preset).d_model, preset, seed=seed).float().cpu()
    generator = torch.Generator().manual_seed(seed)
    probe = perturbed_copy(model, generator).eval()
    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("causality", lambda: check_causality(probe, generator)),
        ("chunk consistency", lambda: check_chunk_consistency(probe, generator)),
        ("step consistency", lambda: check_step_consistency(probe, generator)),
        ("gradients", lambda: check_gradients(model, generator)),
        ("long sequence", lambda: check_long_sequence(model, generator, long_steps)),
        ("parameter budget", lambda: check_parameter_budget(model, preset)),
        ("state size", lambda: check_state_size(model)),
    ]
    model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [_guarded(name, check) for name, check in checks]
    finally:
        torch.set_num_threads(threads)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arch", help="a registered name (e.g. gsa) or a dotted path package.module:Class")
    parser.add_argument(
        "--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help=f"size to build (default {DEFAULT_PRESET})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the test inputs")
    parser.add_argument("--long-steps", type=int, default=16_384, help="length of the long-sequence check")


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    results = check_backbone(args.arch, args.preset, seed=args.seed, long_steps=args.long_steps)
    rows = [{"property": r.name, "result": "pass" if r.passed else "FAIL", "detail": r.detail} for r in results]
    print(f"{args.arch} at preset {args.preset} (CPU, float32, seed {args.seed})")
    print(format_table(rows))
    print(f"{time.perf_counter() - started:.1f} s")
    failed = [r for r in results if not r.passed]
    if failed:
        print(f"FAILED: {failed[0].name}: {failed[0].detail}", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0
