"""`python -m bench perf backbones`: backbone memory, which the speed suite cannot measure.

Speed is measured by pytest-benchmark (benchmarks/, `make bench`, docs/performance.md); this package
keeps what that cannot express: peak memory in a fresh process per backbone (`backbones`) and per
training step (`train.measure`, the speed part of `gpu-check`), and the set-up both share with the suite.
Each suite is a module with `configure(parser)` and `main(args) -> int`, like a command.
"""

from __future__ import annotations

import argparse
import importlib

from bench.errors import BenchError

SUITES: dict[str, str] = {"backbones": "bench.perf.backbones"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", choices=sorted(SUITES), help="which measurement to run")
    parser.add_argument("suite_args", nargs=argparse.REMAINDER, help="options passed to the suite")


def main(args: argparse.Namespace) -> int:
    if args.suite not in SUITES:
        raise BenchError(f"unknown suite {args.suite!r}; choose from: {', '.join(SUITES)}")
    module = importlib.import_module(SUITES[args.suite])
    parser = argparse.ArgumentParser(prog=f"python -m bench perf {args.suite}")
    module.configure(parser)
    return int(module.main(parser.parse_args(args.suite_args)) or 0)
