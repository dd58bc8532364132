"""`python -m bench <command>`: each command lives in its own module.

A command module defines `configure(parser: argparse.ArgumentParser) -> None` and
`main(args: argparse.Namespace) -> int`. Modules are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.errors import USER_ERRORS

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("bench.demo", "sample, solve and step AnyMDP tasks and print what was measured"),
    "check-arch": ("bench.check_arch", "run the conformance checks on a backbone"),
    "gpu-check": ("bench.gpu_check", "on one CUDA GPU: GPU tests, kernels, speed, 200 training steps (results/gpu/)"),
    "perf": ("bench.perf", "backbone memory (peak RSS by length, per step); speed is `make bench`"),
    "run": ("bench.run", "train a backbone on a preset, evaluate it in context and write its result file"),
    "eval": ("bench.eval_command", "roll out a trained checkpoint on a suite of tasks (test, valid, fresh)"),
    "data": ("bench.data.command", "build, verify and describe the DPD training data of a preset"),
    "fidelity": ("bench.anymdp.fidelity", "compare our AnyMDP generator with the official one (needs xenoverse)"),
    "leaderboard": ("bench.report.leaderboard", "regenerate leaderboard.md from the validated result files"),
    "results": ("bench.report.frame", "export the valid result files as one tidy table (CSV, Parquet)"),
    "plot": ("bench.report.plot", "write comparison figures (PNG and SVG) to results/plots/"),
    "calibrate": ("bench.report.calibration", "simulate the paired test's false-positive rate and power (mean, IQM)"),
    "validate": ("bench.report.validate", "check result files: schema, preset, dataset, recomputed metrics"),
    "ood-table": ("bench.ood_table", "run TQL-UCB on the Table 1 tasks and write the side-by-side table"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        build_parser().print_help()
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m bench {name}", description=help_text)
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
