"""`python -m bench data {build,verify,stats,manifest}`: the DPD training data of a preset."""

from __future__ import annotations

import argparse
import sys

from bench.data import shards
from bench.data.loader import ShardedSequences
from bench.data.stats import split_stats
from bench.errors import BenchError
from bench.presets import DEFAULT_PRESET, get_preset
from bench.report.table import format_table

MAX_LISTED = 20
"""Drifted tasks listed one per line by `data verify --tasks`."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("build", "verify", "stats", "manifest"),
        help="build shards / verify checksums (and tasks) / print statistics / write committed manifests",
    )
    parser.add_argument("--preset", default=DEFAULT_PRESET, help=f"preset name (default {DEFAULT_PRESET})")
    parser.add_argument(
        "--root",
        default=None,
        help=f"data folder of the preset (default: datasets/anymdp-v2/<preset>, or ${shards.DATA_ENV}/<preset>)",
    )
    parser.add_argument(
        "--split", choices=(*shards.SPLITS, "all"), default="all", help="build: which split (default all)"
    )
    parser.add_argument("--shard", default=None, help="build: 'k/N' builds shards k, k+N, k+2N, ... only")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument(
        "--tasks", action="store_true", help="verify: also regenerate every recorded task and compare fingerprints"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    preset = get_preset(args.preset)
    if args.workers is not None and args.workers < 1:
        raise BenchError(f"--workers must be a positive int; got {args.workers}")
    progress = not args.no_progress
    if args.action == "build":
        splits = shards.SPLITS if args.split == "all" else (args.split,)
        shard = shards.parse_shard_spec(args.shard) if args.shard is not None else None
        manifests = shards.build(preset, args.root, splits, shard, args.workers, progress)
        for split, manifest in manifests.items():
            state = "complete" if manifest is not None else "incomplete (other shards not built yet)"
            print(f"{split}: {state} in {shards.data_root(preset, args.root) / split}")
        return 0
    if args.action == "verify":
        problems = shards.verify_shards(preset, args.root)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(f"FAILED: {len(problems)} shard(s) missing or corrupt", file=sys.stderr)
            return 1
        print(f"shards of preset {preset.name!r}: all checksums match")
        if args.tasks:
            checked, drifted = shards.verify_tasks(preset, args.root, args.workers or 1, progress)
            for line in drifted[:MAX_LISTED]:
                print(line, file=sys.stderr)
            if drifted:
                more = f" (first {MAX_LISTED} listed)" if len(drifted) > MAX_LISTED else ""
                print(
                    f"FAILED: {len(drifted)} of {checked} regenerated tasks differ from their records{more}",
                    file=sys.stderr,
                )
                return 1
            print(f"tasks: {checked} regenerated, all fingerprints match")
        return 0
    if args.action == "stats":
        root = shards.data_root(preset, args.root)
        for split in shards.SPLITS:
            rows, totals = split_stats(ShardedSequences(root, split))
            print(
                f"{split}: "
                + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in totals.items())
            )
            print(format_table(rows))
        return 0
    for path in shards.write_committed_manifests(preset, args.root, args.workers or 1):
        print(f"wrote {path}")
    return 0
