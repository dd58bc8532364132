"""`python -m bench validate <result.json> ...`: is a result file trustworthy?

A result passes when it lies where its own fields place it (`<preset>/<arch>/seed<seed>.json`),
follows the schema (`bench.report.results.check_result`), was made with the
current definition of its preset (`Preset.digest()`) and with the expected dataset (the dataset
fingerprint recorded by the other results of its preset must agree, and match the committed
manifests where they name one), from the backbone source found here (schema 2 records its
digests: `bench.provenance`), and when every summary metric, of the test tasks and of the OOD
tasks, recomputes, to rounding, from the per-task anchored scores stored beside it
(`metrics.agent_record`), so that an edited number is caught.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from architectures import resolve
from bench import metrics
from bench.errors import USER_ERRORS, BenchError
from bench.metrics import record_arrays
from bench.presets import PRESETS
from bench.provenance import backbone_source
from bench.report.results import AGENTS, arch_dirname, load_result

RECOMPUTE_RTOL = 1e-9
"""Relative tolerance between a stored summary number and its recomputation."""


def recompute_agent(record: dict, agent: str) -> dict:
    """The {"overall", "groups"} summaries of one agent of an `interactive`-shaped record,
    recomputed from its stored per-task scores."""
    tasks = record["agents"][agent]["tasks"]
    curves, few_shot = record_arrays(tasks)
    steps = record["eval_steps"]
    if curves.shape[1] != metrics.anchor_steps(steps).size:
        raise BenchError(f"{curves.shape[1]} anchors stored; {steps} steps have {metrics.anchor_steps(steps).size}")
    return metrics.summarize(
        curves,
        few_shot,
        tasks["group"],
        metrics.anchor_steps(steps),
        steps,
        record["bootstrap_samples"],
        metrics.BOOTSTRAP_SEED,
    )


def scored_records(doc: dict) -> list[tuple[str, dict]]:
    """(where, interactive-shaped record) of every set of rollouts a result stores."""
    records = [("interactive", doc["interactive"])]
    for name, record in doc["ood"]["by_task"].items():
        records.append((f"ood.by_task.{name}", record))
    return records


def _mismatch(stored: object, fresh: object, where: str) -> str | None:
    """The first place where two JSON-like values differ beyond rounding, or None."""
    if isinstance(fresh, dict):
        if not isinstance(stored, dict) or set(stored) != set(fresh):
            return f"{where}: keys differ"
        for key in fresh:
            if reason := _mismatch(stored[key], fresh[key], f"{where}.{key}"):
                return reason
        return None
    if isinstance(fresh, list):
        if not isinstance(stored, list) or len(stored) != len(fresh):
            return f"{where}: length differs"
        for i, (a, b) in enumerate(zip(stored, fresh)):
            if reason := _mismatch(a, b, f"{where}[{i}]"):
                return reason
        return None
    if fresh is None or stored is None:
        return None if fresh is stored else f"{where}: stored {stored!r}, recomputed {fresh!r}"
    if isinstance(fresh, (int, float)) and isinstance(stored, (int, float)):
        if math.isclose(float(stored), float(fresh), rel_tol=RECOMPUTE_RTOL, abs_tol=1e-12):
            return None
        return f"{where}: stored {stored!r}, recomputed {fresh!r}"
    return None if stored == fresh else f"{where}: stored {stored!r}, recomputed {fresh!r}"


def validate_doc(doc: dict, expected_fingerprint: str | None = None) -> list[str]:
    """Reasons a parsed result is not trustworthy (empty: it passes). Schema problems come first.
    The dataset fingerprint must be `expected_fingerprint`, by default the one the committed
    manifests record for the result's preset (not checked where they record none)."""
    from bench.report.results import check_result

    reasons = check_result(doc)
    if reasons:
        return reasons
    preset = PRESETS.get(doc["preset"])
    if preset is None:
        return [f"preset {doc['preset']!r} is not defined here; known: {', '.join(PRESETS)}"]
    if doc["manifest"]["preset_digest"] != preset.digest():
        return [f"preset digest {doc['manifest']['preset_digest'][:12]}... is not the current {preset.name!r} preset's"]
    fingerprint = doc["manifest"]["dataset_fingerprint"]
    if expected_fingerprint is None:
        from bench.data.shards import committed_fingerprint

        expected_fingerprint = committed_fingerprint(preset)
    if expected_fingerprint is not None and fingerprint != expected_fingerprint:
        return [f"dataset fingerprint {fingerprint[:12]}... differs from the expected {expected_fingerprint[:12]}..."]
    if reason := source_mismatch(doc["manifest"]):
        return [reason]
    for where, scored in scored_records(doc):
        for agent in AGENTS:
            record = scored["agents"][agent]
            try:
                fresh = recompute_agent(scored, agent)
            except (BenchError, KeyError, TypeError, ValueError) as err:
                return [f"{where}.agents.{agent}: cannot recompute the summaries ({err})"]
            stored = {key: record[key] for key in ("overall", "groups")}
            if reason := _mismatch(stored, fresh, f"{where}.agents.{agent}"):
                return [f"{reason} (an edited or corrupted number)"]
    return []


def source_mismatch(manifest: dict) -> str | None:
    """Why the backbone source recorded in a manifest is not the source found here, or None."""
    try:
        cls = resolve(manifest["arch_class"])
    except USER_ERRORS as err:
        return f"backbone source cannot be checked: {err}"
    recorded, here = manifest["backbone_source"], backbone_source(cls)
    if recorded["sha256"] == here["sha256"]:
        return None
    files = sorted(set(recorded["files"]) | set(here["files"]))
    changed = [f for f in files if recorded["files"].get(f) != here["files"].get(f)]
    return (
        f"backbone source differs from the run's ({', '.join(changed) or 'the file set'} changed): rerun it, "
        f"or check out the commit it was made at ({manifest.get('git_commit') or 'unknown'})"
    )


def misplaced(path: str | Path, doc: dict) -> str | None:
    """Why `path` is not the place of `doc` (`<preset>/<arch>/seed<seed>.json`, the layout
    `write_result` uses), or None: a copied or renamed file would otherwise count under another
    architecture or seed."""
    expected = (doc["preset"], arch_dirname(doc["arch"]), f"seed{doc['seed']}.json")
    found = Path(path).parts[-3:]
    if found != expected:
        return (
            f"file is at {'/'.join(found)} but holds preset {doc['preset']!r}, arch {doc['arch']!r}, "
            f"seed {doc['seed']}: expected {'/'.join(expected)}"
        )
    return None


def validate_file(path: str | Path, expected_fingerprint: str | None = None) -> tuple[dict | None, list[str]]:
    doc, reasons = load_result(path)
    if doc is None or reasons:
        return doc, reasons
    if reason := misplaced(path, doc):
        return doc, [reason]
    return doc, validate_doc(doc, expected_fingerprint)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="result files (results/<preset>/<arch>/seed<k>.json)")


def main(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.paths:
        _, reasons = validate_file(path)
        if reasons:
            failed += 1
            print(f"FAIL {path}: {reasons[0]}")
        else:
            print(f"ok   {path}")
    return 1 if failed else 0
