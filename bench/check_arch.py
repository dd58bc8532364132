"""`python -m bench check-arch <name or module:Class> [--preset tiny]`: the backbone conformance checks.

Builds the backbone at the preset's size on CPU in float32 and checks, in order:

1. interface: types and shapes of forward, step, init_state and state_size on a small input
   (a failure here stops the later checks, which would only fail with torch errors);
2. causality: outputs before t do not change when inputs at t and later are perturbed;
3. chunk consistency: one forward equals forwards over pieces with the state carried;
4. step consistency: `step` one step at a time equals one forward (outputs and final state);
5. gradients: every parameter gets a finite gradient (through a carried state);
6. bf16 autocast: forward under CPU bf16 autocast keeps a float32 state and stays close to float32;
7. long sequence: no NaN/inf over a 16K-step sequence (chunks of 2048, state carried, no grad);
8. parameter budget: the parameter count is within the preset's tolerance of its budget;
9. state size: `state_size()` counts the floating-point numbers `init_state(1)` holds.

A failure is reported as one sentence naming the rule broken and its likely cause. Exits non-zero
naming the first failure. `check_backbone(..., quick=True)` is the fast subset `bench run` uses.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from architectures import Backbone, State, build_backbone, count_parameters, map_state
from bench.errors import BenchError
from bench.presets import DEFAULT_PRESET, PRESETS, backbone_size, get_preset
from bench.report.table import format_table

TOLERANCE = 1e-4
"""Relative error allowed between two forms of the same computation in float32."""
CAUSAL_TOLERANCE = 1e-6
"""Relative change allowed in outputs before the perturbed step (exactly 0 in exact arithmetic); also
the change below which an output counts as not depending on the incoming state."""
BF16_TOLERANCE = 5e-2
"""Relative error allowed between the blocks' outputs (y - x) under bf16 autocast and in float32.
Measured by this check on 2026-12-03: at tiny, seeds 0-3, rwkv7 4.4-4.6e-3, gdn 7.2-7.9e-3, gsa
4.7-5.0e-3, mamba2 6.7-7.0e-3, transformer 4.5-4.8e-3, lstm 3.3-3.4e-3; at small (seed 0) 3.9e-3 to
8.2e-3; at paper (seed 0) 6.4e-3 to 1.4e-2 (mamba2). bfloat16 keeps 8 significant bits (3.9e-3);
5e-2 is 6x the largest tiny error and 3.5x the largest paper one."""
CHUNK_PIECES = (37, 1, 50, 12)
"""Segment lengths for the chunk-consistency check (odd sizes, to exercise internal padding)."""
BF16_PIECES = (20, 28)
"""Segment lengths for the bf16 autocast check (the state is carried from the first to the second)."""
LONG_CHUNK = 2048
"""Segment length for the long-sequence check."""
QUICK_LONG_STEPS = 512
"""Most steps of the long-sequence check with `quick=True`."""
PERTURB_STD = 0.02
"""Std of the seeded noise added to every weight of the copy that the consistency checks probe."""
INTERFACE_BATCH, INTERFACE_LENGTH = 2, 20
"""The input the interface check feeds forward and step."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    """The property checked, e.g. "causality"."""
    passed: bool
    """Whether the backbone has the property."""
    detail: str
    """What was measured (errors, counts), or a sentence saying what is broken and the likely cause."""


class ContractBroken(Exception):
    """A rule of the backbone contract is broken; the message is the sentence reported."""


# --- states and errors --------------------------------------------------------------------------


def _named_leaves(state: State, path: str = "state") -> list[tuple[str, Any]]:
    """Every leaf of a state with its path, e.g. ("state[0]['h']", tensor); dict keys in sorted order."""
    if isinstance(state, dict):
        return [leaf for key in sorted(state) for leaf in _named_leaves(state[key], f"{path}[{key!r}]")]
    if isinstance(state, (list, tuple)):
        return [leaf for i, item in enumerate(state) for leaf in _named_leaves(item, f"{path}[{i}]")]
    return [(path, state)]


def _leaves(state: State) -> list[torch.Tensor]:
    return [leaf for _, leaf in _named_leaves(state) if isinstance(leaf, torch.Tensor)]


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


def _run_pieces(model: Backbone, x: torch.Tensor, sizes: Sequence[int]) -> tuple[torch.Tensor, list[State]]:
    """Forward over pieces of x with the state carried: all outputs, and the state after each piece."""
    outputs, states, state = [], [], None
    for part in x.split(list(sizes), dim=1):
        y, state = model(part, state)
        outputs.append(y)
        states.append(state)
    return torch.cat(outputs, dim=1), states


def _other_state(model: Backbone, generator: torch.Generator, batch: int) -> State:
    """A state unlike init_state(batch): forward's over a random prefix, float leaves plus N(0, 1) noise
    (the noise makes it differ also where forward would return its incoming state unchanged)."""
    _, state = model(_inputs(generator, batch, 16, model.d_model))

    def noisy(leaf: torch.Tensor) -> torch.Tensor:
        return leaf + torch.randn(leaf.shape, generator=generator) if leaf.is_floating_point() else leaf

    return map_state(state, noisy)


def _ignores_state(run: Callable[[State], torch.Tensor], model: Backbone, generator: torch.Generator) -> bool:
    """Whether `run(state)` (a batch of 2) gives the same output from init_state and from another state."""
    with torch.no_grad():
        from_init = run(model.init_state(2, "cpu"))
        from_other = run(_other_state(model, generator, 2))
    return _rel_err(from_other, from_init) <= CAUSAL_TOLERANCE


# --- interface ------------------------------------------------------------------------------------


def _call(what: str, fn: Callable[[], Any]) -> Any:
    """fn(), with an exception turned into a ContractBroken sentence naming `what` was called."""
    try:
        return fn()
    except Exception as err:
        message = str(err).splitlines()[0] if str(err) else ""
        raise ContractBroken(f"{what} raised {type(err).__name__}: {message}") from err


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "a single tensor"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _pair(method: str, returned: Any) -> tuple[Any, State]:
    """`returned` as (y, state), or ContractBroken."""
    if not isinstance(returned, (tuple, list)) or len(returned) != 2:
        raise ContractBroken(f"{method} must return (y, state), got {_describe(returned)}")
    return returned[0], returned[1]


def _check_output(method: str, y: Any, expected: tuple[int, ...]) -> None:
    """ContractBroken unless y is a finite tensor of shape `expected`: (B, L, D) or (B, D)."""
    if not isinstance(y, torch.Tensor):
        raise ContractBroken(f"{method} must return (y, state) with y a tensor, got y as {_describe(y)}")
    form = "(B, L, D)" if len(expected) == 3 else "(B, D)"
    if y.dim() != len(expected) or y.shape[0] != expected[0]:
        raise ContractBroken(f"{method} output has shape {tuple(y.shape)}, expected {form} = {expected}")
    if len(expected) == 3 and y.shape[1] != expected[1]:
        raise ContractBroken(
            f"expected L={expected[1]} outputs, got {y.shape[1]}: {method} must return one output per input step"
        )
    if y.shape[-1] != expected[-1]:
        raise ContractBroken(
            f"{method} output has width {y.shape[-1]}, expected d_model={expected[-1]}: "
            "the last projection must map back to d_model"
        )
    if not torch.isfinite(y).all():
        raise ContractBroken(
            f"{method} output has NaN or inf for a standard normal input of shape {expected}: "
            "look for a division, log or sqrt of a value that can be zero or negative"
        )


def _tensor_leaves(state: State, source: str) -> list[tuple[str, torch.Tensor]]:
    """The named leaves of a state, or ContractBroken naming the first one that is not a tensor."""
    leaves = _named_leaves(state)
    for path, leaf in leaves:
        if not isinstance(leaf, torch.Tensor):
            raise ContractBroken(
                f"{source} holds {_describe(leaf)} at {path}: every leaf of a state must be a tensor "
                "(nest tuples, lists and dicts of tensors)"
            )
    return leaves


def _check_batch_first(one: list[tuple[str, torch.Tensor]], two: list[tuple[str, torch.Tensor]]) -> None:
    if [path for path, _ in one] != [path for path, _ in two]:
        raise ContractBroken("init_state(1) and init_state(2) differ in structure: only the batch may change")
    for (path, a), (_, b) in zip(one, two):
        if a.dim() == 0 or a.shape[0] != 1 or b.shape[0] != 2 or a.shape[1:] != b.shape[1:]:
            raise ContractBroken(
                f"state is not batch-first: {path} has shape {tuple(a.shape)} in init_state(1) and "
                f"{tuple(b.shape)} in init_state(2); dimension 0 of every state tensor must be the batch"
            )


def _check_like(state: State, reference: list[tuple[str, torch.Tensor]], source: str) -> None:
    """ContractBroken unless `state` has the paths, shapes and dtypes of `reference` (init_state(2))."""
    got = _tensor_leaves(state, source)
    if [path for path, _ in got] != [path for path, _ in reference]:
        raise ContractBroken(
            f"{source} has {len(got)} tensors, init_state(2) {len(reference)} (or other paths): "
            "a returned state must have init_state's structure"
        )
    for (path, a), (_, b) in zip(got, reference):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ContractBroken(
                f"{source} has {path} of shape {tuple(a.shape)} ({a.dtype}), init_state(2) "
                f"{tuple(b.shape)} ({b.dtype}): a returned state must have init_state's structure"
            )


def _check_state_size_type(model: Backbone) -> None:
    size = _call("state_size()", model.state_size)
    if not isinstance(size, int) or isinstance(size, bool):
        raise ContractBroken(f"state_size() must return an int, got {_describe(size)}")


def _check_init_state(model: Backbone) -> list[tuple[str, torch.Tensor]]:
    """The named leaves of init_state(2) once init_state(1) and (2) hold batch-first tensors."""
    one = _tensor_leaves(_call("init_state(1, 'cpu')", lambda: model.init_state(1, "cpu")), "init_state(1)")
    two = _tensor_leaves(_call("init_state(2, 'cpu')", lambda: model.init_state(2, "cpu")), "init_state(2)")
    _check_batch_first(one, two)
    return two


def _check_forward(model: Backbone, x: torch.Tensor, reference: list[tuple[str, torch.Tensor]]) -> State:
    """Check forward on x from state None, from init_state and for L=1 after it; the state it returns."""
    shape = tuple(x.shape)
    y, state = _pair("forward", _call(f"forward(x) with x of shape {shape}", lambda: model(x)))
    _check_output("forward", y, shape)
    _check_like(state, reference, "the state forward returns")
    start = model.init_state(x.shape[0], "cpu")
    y_init, _ = _pair("forward", _call("forward(x, init_state(2))", lambda: model(x, start)))
    if _rel_err(y_init - x, y - x) > TOLERANCE:
        raise ContractBroken("forward(x) and forward(x, init_state(2)) differ: state=None must mean init_state")
    y_one, _ = _pair("forward", _call("forward with L=1", lambda: model(x[:, -1:], state)))
    _check_output("forward", y_one, (shape[0], 1, shape[2]))
    return state


def _check_step(model: Backbone, x: torch.Tensor, state: State, reference: list[tuple[str, torch.Tensor]]) -> None:
    """Check step on x (B, D) from a state forward returned."""
    y, step_state = _pair("step", _call(f"step(x) with x of shape {tuple(x.shape)}", lambda: model.step(x, state)))
    _check_output("step", y, tuple(x.shape))
    _check_like(step_state, reference, "the state step returns")


def _interface(model: Backbone, generator: torch.Generator) -> str:
    """Check the interface on a small input; a description of it, or ContractBroken."""
    _check_state_size_type(model)
    reference = _check_init_state(model)
    x = _inputs(generator, INTERFACE_BATCH, INTERFACE_LENGTH, model.d_model)
    state = _check_forward(model, x, reference)
    _check_step(model, x[:, 0], state, reference)
    tensors = f"{len(reference)} tensor{'' if len(reference) == 1 else 's'}"
    return f"forward {tuple(x.shape)}, step {tuple(x[:, 0].shape)}: shapes kept; state: {tensors}, batch first"


def check_interface(model: Backbone, generator: torch.Generator) -> CheckResult:
    try:
        with torch.no_grad():
            return CheckResult("interface", True, _interface(model, generator))
    except ContractBroken as broken:
        return CheckResult("interface", False, str(broken))


# --- properties -----------------------------------------------------------------------------------


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
            f"output at t={first} changed (rel {err:.2e}) when inputs from t={cut} on were perturbed: "
            "forward looks ahead (a mask, shift or convolution that is not causal)",
        )
    return CheckResult("causality", True, f"outputs before t={cut} unchanged (rel {err:.1e})")


def check_chunk_consistency(model: Backbone, generator: torch.Generator) -> CheckResult:
    x = _inputs(generator, 2, sum(CHUNK_PIECES), model.d_model)
    with torch.no_grad():
        y, state = model(x)
        y_pieces, piece_states = _run_pieces(model, x, CHUNK_PIECES)
    out_err, state_err = _rel_err(y_pieces - x, y - x), _state_err(piece_states[-1], state)
    errors = f"output rel err {out_err:.1e}, state rel err {state_err:.1e}"
    if max(out_err, state_err) <= TOLERANCE:
        return CheckResult("chunk consistency", True, f"pieces {'+'.join(map(str, CHUNK_PIECES))}: {errors}")
    part = x[:, :8]
    if _ignores_state(lambda s: model(part, s)[0], model, generator):
        sentence = "output does not change when the incoming state changes: `forward` ignores `state`"
    else:
        sentence = (
            "forward over pieces with the state carried differs from one forward: the state is carried incorrectly"
        )
    return CheckResult("chunk consistency", False, f"{sentence} ({errors})")


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
    errors = f"output rel err {out_err:.1e}, state rel err {state_err:.1e}"
    if max(out_err, state_err) <= TOLERANCE:
        return CheckResult("step consistency", True, f"24 steps: {errors}")
    if _ignores_state(lambda s: model.step(x[:, 0], s)[0], model, generator):
        sentence = "step output does not change when the incoming state changes: `step` ignores `state`"
    else:
        sentence = "step one step at a time differs from one forward: step and forward compute different recurrences"
    return CheckResult("step consistency", False, f"{sentence} ({errors})")


def check_gradients(model: Backbone, generator: torch.Generator) -> CheckResult:
    x = _inputs(generator, 2, 64, model.d_model)
    weights = torch.randn(x.shape, generator=generator)
    model.zero_grad(set_to_none=True)
    y, _ = _run_pieces(model, x, (32, 32))  # the first piece's parameters also get gradient via the state
    (y * weights).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    model.zero_grad(set_to_none=True)
    if missing:
        return CheckResult(
            "gradients",
            False,
            f"no gradient reaches {', '.join(missing[:5])}: every parameter must affect the outputs "
            "(remove unused parameters)",
        )
    if bad:
        return CheckResult("gradients", False, f"non-finite gradient in {', '.join(bad[:5])}")
    count = sum(1 for _ in model.parameters())
    return CheckResult("gradients", True, f"all {count} parameter tensors get a finite gradient")


def _first_not_float32(states: list[State]) -> tuple[str, torch.dtype] | None:
    """The path and dtype of the first floating-point leaf that is not float32, if any."""
    for state in states:
        for path, leaf in _named_leaves(state):
            if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.dtype != torch.float32:
                return path, leaf.dtype
    return None


def check_bf16_autocast(model: Backbone, generator: torch.Generator) -> CheckResult:
    """Forward over two pieces under CPU bf16 autocast, as training runs under CUDA bf16 autocast."""
    x = _inputs(generator, 2, sum(BF16_PIECES), model.d_model)
    with torch.no_grad():
        y, _ = _run_pieces(model, x, BF16_PIECES)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_bf16, states = _run_pieces(model, x, BF16_PIECES)
    wrong = _first_not_float32(states)
    if wrong is not None:
        path, dtype = wrong
        return CheckResult(
            "bf16 autocast",
            False,
            f"under bf16 autocast {path} of the carried state is {dtype}, not float32: compute the state "
            "in float32 (or cast it back), or it loses precision over a long sequence",
        )
    if not torch.isfinite(y_bf16).all():
        return CheckResult(
            "bf16 autocast",
            False,
            "under bf16 autocast the output has NaN or inf (in float32 it is finite): a value rounds to zero "
            "or overflows in bfloat16; compute that part in float32 (torch.autocast(..., enabled=False))",
        )
    err = _rel_err(y_bf16 - x, y - x)
    if err > BF16_TOLERANCE:
        return CheckResult(
            "bf16 autocast",
            False,
            f"under bf16 autocast the output differs from float32 by rel err {err:.1e} (tolerance "
            f"{BF16_TOLERANCE:.0e}): a computation loses precision in bfloat16 (a difference of large "
            "values?); compute it in float32 (torch.autocast(..., enabled=False))",
        )
    pieces = "+".join(map(str, BF16_PIECES))
    return CheckResult(
        "bf16 autocast",
        True,
        f"pieces {pieces}: state float32, output rel err {err:.1e} (tolerance {BF16_TOLERANCE:.0e})",
    )


def check_long_sequence(model: Backbone, generator: torch.Generator, steps: int) -> CheckResult:
    state, largest = None, 0.0
    with torch.no_grad():
        for start in range(0, steps, LONG_CHUNK):
            x = _inputs(generator, 1, min(LONG_CHUNK, steps - start), model.d_model)
            y, state = model(x, state)
            if not torch.isfinite(y).all():
                return CheckResult(
                    "long sequence",
                    False,
                    f"output becomes NaN or inf within steps {start}..{start + x.shape[1] - 1} of a {steps}-step "
                    "sequence: the state grows without bound (a decay missing, or not below 1?)",
                )
            largest = max(largest, y.abs().max().item())
    if not all(torch.isfinite(leaf).all() for leaf in _leaves(state) if leaf.is_floating_point()):
        return CheckResult(
            "long sequence",
            False,
            f"the state becomes NaN or inf within {steps} steps although the outputs stay finite",
        )
    return CheckResult("long sequence", True, f"{steps} steps finite, max |y| = {largest:.3g}")


def check_parameter_budget(model: Backbone, preset: str) -> CheckResult:
    spec = get_preset(preset)
    count = count_parameters(model)
    deviation = count / spec.param_budget - 1
    if abs(deviation) > spec.param_tolerance:
        return CheckResult(
            "parameter budget",
            False,
            f"{count:,} parameters is {deviation:+.1%} off the {preset} budget {spec.param_budget:,} (tolerance "
            f"{spec.param_tolerance:.0%}): change the constructor arguments of its {preset} size",
        )
    detail = (
        f"{count:,} parameters, {deviation:+.1%} vs budget {spec.param_budget:,} (tolerance {spec.param_tolerance:.0%})"
    )
    return CheckResult("parameter budget", True, detail)


def check_state_size(model: Backbone) -> CheckResult:
    size = model.state_size()
    held = sum(leaf[0].numel() for leaf in _leaves(model.init_state(1, "cpu")) if leaf.is_floating_point())
    if size != held:
        return CheckResult(
            "state size",
            False,
            f"state_size() returns {size:,} but init_state(1) holds {held:,} floating-point numbers: "
            "state_size() must count the numbers held per sequence",
        )
    if size <= 0:
        return CheckResult("state size", False, f"state_size() is {size}: a backbone must carry a state")
    return CheckResult("state size", True, f"state_size() = {size:,} = floating-point numbers in init_state(1)")


# --- running the checks ---------------------------------------------------------------------------


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


def _validate(seed: int, long_steps: int) -> None:
    if not isinstance(long_steps, int) or long_steps < 1:
        raise BenchError(f"long_steps={long_steps!r}; accepted: an integer >= 1 (the long-sequence check's length)")
    if not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise BenchError(f"seed={seed!r}; accepted: an integer from 0 to 2**63 - 1")


def check_backbone(
    arch: str | type[Backbone],
    preset: str = DEFAULT_PRESET,
    seed: int = 0,
    long_steps: int = 16_384,
    overrides: dict[str, Any] | None = None,
    quick: bool = False,
) -> list[CheckResult]:
    """Build `arch` for `preset` with the constructor arguments `overrides` on top of the preset's size
    (BackboneError if it cannot be resolved or built; BenchError for a bad preset, seed or long_steps)
    and run the checks: all of them, or after a failed interface check, none more. `quick` runs the
    long-sequence check over at most QUICK_LONG_STEPS steps (the others take well under a second).

    Runs on one CPU thread: the inputs are small, and on a busy machine two threads were 10-30x
    slower than one. The caller's thread count is restored afterwards.
    """
    _validate(seed, long_steps)
    steps = min(long_steps, QUICK_LONG_STEPS) if quick else long_steps
    spec = get_preset(preset)
    model = build_backbone(arch, spec.d_model, backbone_size(spec), seed=seed, **(overrides or {})).float().cpu()
    generator = torch.Generator().manual_seed(seed)
    probe = perturbed_copy(model, generator).eval()
    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("causality", lambda: check_causality(probe, generator)),
        ("chunk consistency", lambda: check_chunk_consistency(probe, generator)),
        ("step consistency", lambda: check_step_consistency(probe, generator)),
        ("gradients", lambda: check_gradients(model, generator)),
        ("bf16 autocast", lambda: check_bf16_autocast(probe, generator)),
        ("long sequence", lambda: check_long_sequence(model, generator, steps)),
        ("parameter budget", lambda: check_parameter_budget(model, preset)),
        ("state size", lambda: check_state_size(model)),
    ]
    model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        interface = check_interface(probe, generator)
        return [interface] + ([_guarded(name, check) for name, check in checks] if interface.passed else [])
    finally:
        torch.set_num_threads(threads)


def failure_sentence(results: list[CheckResult]) -> str | None:
    """The first failure as one line, "<check>: <sentence>"; None when every check passed."""
    failed = next((r for r in results if not r.passed), None)
    return None if failed is None else f"{failed.name}: {failed.detail}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arch", help="a registered name (e.g. gsa) or a dotted path package.module:Class")
    parser.add_argument(
        "--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help=f"size to build (default {DEFAULT_PRESET})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the test inputs (>= 0)")
    parser.add_argument("--long-steps", type=int, default=16_384, help="length of the long-sequence check (>= 1)")


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    results = check_backbone(args.arch, args.preset, seed=args.seed, long_steps=args.long_steps)
    rows = [{"property": r.name, "result": "pass" if r.passed else "FAIL", "detail": r.detail} for r in results]
    print(f"{args.arch} at preset {args.preset} (CPU, float32, seed {args.seed})")
    print(format_table(rows))
    if not results[0].passed:
        print("the other checks did not run: they need forward, step and init_state to keep the contract")
    print(f"{time.perf_counter() - started:.1f} s")
    sentence = failure_sentence(results)
    if sentence is not None:
        print(f"FAILED: {sentence}", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0
