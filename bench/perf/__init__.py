"""`python -m bench perf <suite>`: speed benchmarks that print tables.

Each suite is a module with `configure(parser)` and `main(args) -> int`, like a command.
"""

from __future__ import annotations

import argparse
import importlib

from bench.errors import BenchError

SUITES: dict[str, str] = {
    "anymdp": "bench.perf.anymdp",
    "backbones": "bench.perf.backbones",
    "train": "bench.perf.train",
    "data": "bench.perf.data",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", choices=sorted(SUITES), help="which benchmark suite to run")
    parser.add_argument("suite_args", nargs=argparse.REMAINDER, help="options passed to the suite")


def main(args: argparse.Namespace) -> int:
    if args.suite not in SUITES:
        raise BenchError(f"unknown suite {args.suite!r}; choose from: {', '.join(SUITES)}")
    module = importlib.import_module(SUITES[args.suite])
    parser = argparse.ArgumentParser(prog=f"python -m bench perf {args.suite}")
    module.configure(parser)
    return int(module.main(parser.parse_args(args.suite_args)) or 0)
