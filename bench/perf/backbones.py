"""`python -m bench perf backbones [--arch NAME ...] [--quick]`: backbone speed on CPU, in float32.

Three tables, for every registered backbone whose module imports (or the ones named):

(a) one layer of the tiny configuration (d_model 128, 4 heads, B 4, T 2048): forward + backward of the chunked `forward`
    against the recurrent form (the sequence fed through `step`, outputs stacked once);
(b) scaling over T (1K .. 16K, B 1, one layer): forward + backward time and peak memory, each
    backbone in a fresh process; peak memory = the largest resident set size (RSS, read from
    /proc/self/statm by a thread polling every 0.5 ms) during the pass, minus the RSS before it;
(c) one `step` for B 256 at the tiny preset (no grad), with the state numbers per sequence.
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import time

import torch

from architectures import REGISTRY, Backbone, BackboneError, build_backbone, resolve
from bench.errors import BenchError
from bench.io import atomic_write_json
from bench.perf.common import PeakRSS, median_seconds
from bench.presets import get_preset
from bench.report.table import format_table

D_MODEL, HEADS = get_preset("tiny").d_model, 4
LAYER_BATCH, LAYER_T = 4, 2048
SCALING_T = (1024, 2048, 4096, 8192, 16_384)
STEP_BATCH = 256


def _available(names: list[str]) -> tuple[list[str], list[str]]:
    """(names whose module imports, notes on the others)."""
    found, notes = [], []
    for name in names:
        try:
            resolve(name)
        except BackboneError as err:
            notes.append(f"{name}: skipped ({err})")
            continue
        found.append(name)
    return found, notes


def one_layer(name: str, seed: int = 0) -> Backbone:
    """One layer of `name`'s tiny-preset configuration (d_model 128), with 4 heads where the
    constructor takes `n_heads` and accepts 4 with its other defaults (else the backbone's own
    default head layout)."""
    cls = resolve(name)
    if "n_heads" in inspect.signature(cls.__init__).parameters:
        try:
            return build_backbone(cls, D_MODEL, "tiny", seed=seed, n_layers=1, n_heads=HEADS)
        except BackboneError:
            pass
    return build_backbone(cls, D_MODEL, "tiny", seed=seed, n_layers=1)


def _chunked_pass(model: Backbone, x: torch.Tensor) -> None:
    y, _ = model(x)
    y.square().mean().backward()


def _recurrent_pass(model: Backbone, x: torch.Tensor) -> None:
    state, outputs = model.init_state(x.shape[0], x.device), []
    for x_t in x.unbind(1):
        y_t, state = model.step(x_t, state)
        outputs.append(y_t)
    torch.stack(outputs, 1).square().mean().backward()


def layer_table(names: list[str], length: int, repeats: int) -> list[dict[str, object]]:
    rows = []
    for name in names:
        model = one_layer(name)
        x = torch.randn(LAYER_BATCH, length, D_MODEL, generator=torch.Generator().manual_seed(0), requires_grad=True)
        chunked = median_seconds(lambda: _chunked_pass(model, x), repeats)
        # The chunked runs warmed the layer up; the long step loop is timed without a warm-up run.
        recurrent = median_seconds(lambda: _recurrent_pass(model, x), max(1, repeats // 2), warmup=False)
        rows.append(
            {
                "backbone": name,
                "chunked fwd+bwd (s)": chunked,
                "recurrent fwd+bwd (s)": recurrent,
                "speed-up": f"{recurrent / chunked:.1f}x",
            }
        )
    return rows


def _scaling_worker(name: str, lengths: tuple[int, ...], threads: int, queue) -> None:
    torch.set_num_threads(threads)
    try:
        model = one_layer(name)
        generator = torch.Generator().manual_seed(0)
        _chunked_pass(model, torch.randn(1, 256, D_MODEL, generator=generator, requires_grad=True))
        rows = []
        for length in lengths:
            x = torch.randn(1, length, D_MODEL, generator=generator, requires_grad=True)
            with PeakRSS() as memory:
                started = time.perf_counter()
                _chunked_pass(model, x)
                seconds = time.perf_counter() - started
            model.zero_grad(set_to_none=True)
            rows.append(
                {
                    "backbone": name,
                    "T": length,
                    "fwd+bwd (s)": seconds,
                    "ms per 1K steps": 1000 * seconds / (length / 1024),
                    "peak memory (MiB)": memory.growth / 2**20,
                    "state numbers": model.state_size(),
                }
            )
        queue.put(rows)
    except Exception as err:  # reported as a row, so one broken backbone does not stop the suite
        queue.put([{"backbone": name, "T": "-", "fwd+bwd (s)": f"error: {type(err).__name__}: {err}"}])


def scaling_table(names: list[str], lengths: tuple[int, ...]) -> list[dict[str, object]]:
    context = multiprocessing.get_context("spawn")  # a fresh process per backbone: its own peak RSS
    rows = []
    for name in names:
        queue = context.Queue()
        process = context.Process(target=_scaling_worker, args=(name, lengths, torch.get_num_threads(), queue))
        process.start()
        rows += queue.get()
        process.join()
    return rows


def scaling_record(rows: list[dict[str, object]], threads: int) -> dict:
    """The scaling table as `bench plot` reads it (`results/perf/backbones.json`); error rows are left out."""
    kept = [row for row in rows if isinstance(row["T"], int)]
    return {
        "device": f"cpu, {threads} torch thread{'s' if threads > 1 else ''}",
        "torch": torch.__version__,
        "d_model": D_MODEL,
        "scaling": [
            {
                "arch": row["backbone"],
                "T": row["T"],
                "seconds": row["fwd+bwd (s)"],
                "peak_mib": row["peak memory (MiB)"],
                "state_size": row["state numbers"],
            }
            for row in kept
        ],
    }


def step_table(names: list[str], repeats: int) -> list[dict[str, object]]:
    rows = []
    for name in names:
        model = build_backbone(name, D_MODEL, "tiny")
        x = torch.randn(STEP_BATCH, model.d_model, generator=torch.Generator().manual_seed(0))
        state = model.init_state(STEP_BATCH, "cpu")
        with torch.no_grad():
            seconds = median_seconds(lambda: model.step(x, state), repeats)
        rows.append(
            {"backbone": name, "step B=256 (ms)": 1000 * seconds, "state numbers per sequence": model.state_size()}
        )
    return rows


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", action="append", help="a registered name; repeat for several (default: all)")
    parser.add_argument("--quick", action="store_true", help="T 1024 in (a), T up to 4K in (b), fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--only", choices=("layer", "scaling", "step"), action="append", help="run only these tables")
    parser.add_argument(
        "--json",
        default=None,
        help="also write table (b) to this file for `bench plot` (e.g. results/perf/backbones.json)",
    )


def main(args: argparse.Namespace) -> int:
    for name in args.arch or []:
        if name not in REGISTRY:
            raise BenchError(f"unknown backbone {name!r}; registered: {', '.join(REGISTRY)}")
    if args.threads is not None:
        if args.threads < 1:
            raise BenchError(f"--threads {args.threads}; accepted: a positive integer")
        torch.set_num_threads(args.threads)
    names, notes = _available(args.arch or list(REGISTRY))
    tables = args.only or ["layer", "scaling", "step"]
    if args.json and "scaling" not in tables:
        raise BenchError("--json writes the scaling table (b); add --only scaling or drop --only")
    length = 1024 if args.quick else LAYER_T
    repeats = 1 if args.quick else 3
    print(f"CPU float32, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for note in notes:
        print(note)
    if "layer" in tables:
        print(f"\n(a) one layer, d_model {D_MODEL}, {HEADS} heads, B {LAYER_BATCH}, T {length}: median seconds")
        print(format_table(layer_table(names, length, repeats), markdown=args.markdown))
    if "scaling" in tables:
        lengths = SCALING_T[:3] if args.quick else SCALING_T
        print("\n(b) scaling, one layer, B 1: forward + backward time and peak RSS growth")
        rows = scaling_table(names, lengths)
        print(format_table(rows, markdown=args.markdown))
        if args.json:
            atomic_write_json(args.json, scaling_record(rows, torch.get_num_threads()))
            print(f"wrote {args.json}")
    if "step" in tables:
        print(f"\n(c) one step at the tiny preset, B {STEP_BATCH}, no grad: median milliseconds")
        print(format_table(step_table(names, 5 if args.quick else 20), markdown=args.markdown))
    return 0
