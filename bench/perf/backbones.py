"""`python -m bench perf backbones [--arch NAME ...] [--only scaling|step] [--json FILE]`: backbone memory on CPU.

What the speed suite (benchmarks/, timed by pytest-benchmark) cannot measure: peak memory, which needs
each backbone in a fresh process. Two tables, for every registered backbone whose module imports (or
the ones named), in float32:

- scaling: one layer of the tiny configuration (d_model 128, 4 heads), B 1, one forward + backward per
  T (1K .. 16K): its time and peak memory (the largest resident set size during the pass, read from
  /proc/self/statm by a thread polling every 0.5 ms, minus the RSS before it); `--json` writes it for
  `bench plot` (results/perf/backbones.json -> results/plots/scaling.png);
- step: the tiny preset's backbone, the state numbers per sequence and the peak memory of a fresh
  state for B 256 and one `step` (no grad).

Also home of the one-layer set-up that the speed suite shares (`one_layer`, `chunked_pass`, `recurrent_pass`).
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
from bench.perf.common import PeakRSS
from bench.presets import get_preset
from bench.report.table import format_table

D_MODEL, HEADS = get_preset("tiny").d_model, 4
SCALING_T = (1024, 2048, 4096, 8192, 16_384)
STEP_BATCH = 256
TABLES = ("scaling", "step")


def available(names: list[str]) -> tuple[list[str], list[str]]:
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


def chunked_pass(model: Backbone, x: torch.Tensor) -> None:
    """Forward + backward of the whole sequence through `forward`."""
    y, _ = model(x)
    y.square().mean().backward()


def recurrent_pass(model: Backbone, x: torch.Tensor) -> None:
    """Forward + backward of the same sequence fed step by step through `step`, outputs stacked once."""
    state, outputs = model.init_state(x.shape[0], x.device), []
    for x_t in x.unbind(1):
        y_t, state = model.step(x_t, state)
        outputs.append(y_t)
    torch.stack(outputs, 1).square().mean().backward()


def _scaling_rows(name: str, lengths: tuple[int, ...], generator: torch.Generator) -> list[dict[str, object]]:
    model = one_layer(name)
    chunked_pass(model, torch.randn(1, 256, D_MODEL, generator=generator, requires_grad=True))  # warm-up
    rows = []
    for length in lengths:
        x = torch.randn(1, length, D_MODEL, generator=generator, requires_grad=True)
        with PeakRSS() as memory:
            started = time.perf_counter()
            chunked_pass(model, x)
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
    return rows


def _step_row(name: str, generator: torch.Generator) -> dict[str, object]:
    model = build_backbone(name, D_MODEL, "tiny")
    x = torch.randn(STEP_BATCH, model.d_model, generator=generator)
    with torch.no_grad():
        model.step(x[:1], model.init_state(1))  # warm-up
        with PeakRSS() as memory:
            model.step(x, model.init_state(STEP_BATCH))
    return {
        "backbone": name,
        "state numbers per sequence": model.state_size(),
        f"peak memory, state + step, B {STEP_BATCH} (MiB)": memory.growth / 2**20,
    }


def _worker(name: str, tables: list[str], lengths: tuple[int, ...], threads: int, queue) -> None:
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    try:
        rows = {"scaling": _scaling_rows(name, lengths, generator) if "scaling" in tables else []}
        rows["step"] = [_step_row(name, generator)] if "step" in tables else []
    except Exception as err:  # reported as a row, so one broken backbone does not stop the others
        error = f"error: {type(err).__name__}: {err}"
        rows = {
            "scaling": [{"backbone": name, "T": "-", "fwd+bwd (s)": error}],
            "step": [{"backbone": name, "state numbers per sequence": error}],
        }
    queue.put(rows)


def memory_tables(names: list[str], tables: list[str], lengths: tuple[int, ...]) -> dict[str, list[dict]]:
    """{table: rows}, each backbone measured in a fresh process (its own peak RSS)."""
    context = multiprocessing.get_context("spawn")
    out: dict[str, list[dict]] = {table: [] for table in TABLES}
    for name in names:
        queue = context.Queue()
        process = context.Process(target=_worker, args=(name, tables, lengths, torch.get_num_threads(), queue))
        process.start()
        for table, rows in queue.get().items():
            out[table] += rows
        process.join()
    return out


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


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", action="append", help="a registered name; repeat for several (default: all)")
    parser.add_argument("--quick", action="store_true", help="T up to 4K in the scaling table")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--only", choices=TABLES, action="append", help="run only these tables")
    parser.add_argument(
        "--json",
        default=None,
        help="also write the scaling table to this file for `bench plot` (e.g. results/perf/backbones.json)",
    )


def main(args: argparse.Namespace) -> int:
    for name in args.arch or []:
        if name not in REGISTRY:
            raise BenchError(f"unknown backbone {name!r}; registered: {', '.join(REGISTRY)}")
    if args.threads is not None:
        if args.threads < 1:
            raise BenchError(f"--threads {args.threads}; accepted: a positive integer")
        torch.set_num_threads(args.threads)
    tables = args.only or list(TABLES)
    if args.json and "scaling" not in tables:
        raise BenchError("--json writes the scaling table; add --only scaling or drop --only")
    names, notes = available(args.arch or list(REGISTRY))
    print(f"CPU float32, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for note in notes:
        print(note)
    rows = memory_tables(names, tables, SCALING_T[:3] if args.quick else SCALING_T)
    if "scaling" in tables:
        print("\nscaling, one layer, B 1: forward + backward time and peak RSS growth")
        print(format_table(rows["scaling"], markdown=args.markdown))
        if args.json:
            atomic_write_json(args.json, scaling_record(rows["scaling"], torch.get_num_threads()))
            print(f"wrote {args.json}")
    if "step" in tables:
        print(f"\nstep at the tiny preset, B {STEP_BATCH}, no grad: state and peak RSS growth")
        print(format_table(rows["step"], markdown=args.markdown))
    return 0
