"""Result files: one JSON document per (preset, architecture, seed), versioned and checked.

`results/<preset>/<arch>/seed<k>.json`. The schema is documented in docs/results-schema.md;
`check_result` returns the reasons a document does not follow it (empty list: valid), so a
reader (leaderboard, validator) can skip a bad file and say why. Writers go through
`write_result`, which checks first and writes atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io import atomic_write

SCHEMA_VERSION = 3
READABLE_VERSIONS = (3,)
"""Version 3 scores anchored episodes averaged over several rollouts (bench.metrics); files of
versions 1-2 stored the biased window scores of one rollout and are no longer read: rerun them."""
KIND = "anymdp-bench-result"
AGENTS = ("model", "oracle", "random", "tql_ucb")
"""Agents scored by interactive rollouts on the same test tasks; "model" is the trained backbone."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class _Optional:
    """Spec wrapper: the value may be null."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _IfPresent:
    """Spec wrapper: the key may be absent (added to the schema after files were written)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _MapOf:
    """Spec: an object whose keys are any strings and whose values follow `spec`."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _ListOf:
    """Spec: a list whose items follow `spec` (optionally of a fixed length)."""

    def __init__(self, spec: Any, length: int | None = None) -> None:
        self.spec, self.length = spec, length


NUMBER = float  # ints are accepted where a number is expected; bools are not
MAYBE = _Optional(NUMBER)
CURVE = {"t": _ListOf(int), "mean": _ListOf(MAYBE), "lo": _ListOf(MAYBE), "hi": _ListOf(MAYBE)}
SUMMARY = {
    "n_tasks": int,
    "final": MAYBE,
    "final_ci": _ListOf(MAYBE, 2),
    "first": MAYBE,
    "auc": MAYBE,
    "auc_ci": _ListOf(MAYBE, 2),
    "gain": MAYBE,
    "gain_ci": _ListOf(MAYBE, 2),
    "few_shot": MAYBE,
    "reach_fraction": MAYBE,
    "steps_to_threshold": _Optional(int),
    "paper_max": MAYBE,
    "curve": CURVE,
}
TASKS = {
    "ns": _ListOf(int),
    "group": _ListOf(str),
    "j_rand": _ListOf(NUMBER),
    "j_opt": _ListOf(NUMBER),
    "few_shot": _ListOf(MAYBE),
    "anchored": _ListOf(_ListOf(MAYBE)),
}
AGENT_RESULT = {"overall": SUMMARY, "groups": _MapOf(SUMMARY), "tasks": TASKS}
INTERACTIVE = {
    "eval_steps": int,
    "n_tasks": int,
    "skipped_tasks": int,
    "gap_threshold": NUMBER,
    "bootstrap_samples": int,
    "rollouts": int,
    "rollout_seed": int,
    "rollout_noise": {name: _ListOf(_ListOf(NUMBER, 2)) for name in AGENTS},
    "agents": {name: AGENT_RESULT for name in AGENTS},
}
SCHEMA: dict[str, Any] = {
    "schema_version": int,
    "kind": str,
    "preset": str,
    "arch": str,
    "seed": int,
    "manifest": {
        "created_utc": str,
        "command": _ListOf(str),
        "git_commit": _Optional(str),
        "git_dirty": _Optional(bool),
        "packages": _MapOf(_Optional(str)),
        "python": str,
        "platform": str,
        "cpu": _IfPresent({"capability": str, "vendor": str, "family": str, "model": str}),
        "device": str,
        "torch_threads": int,
        "dataset_fingerprint": str,
        "preset_digest": str,
        "arch_class": str,
        "backbone_source": {"sha256": str, "files": _MapOf(str)},
        "arch_kwargs": dict,
        "param_count": {"backbone": int, "total": int},
        "state_size": int,
        "wall_time_s": {"data": NUMBER, "train": NUMBER, "offline_eval": NUMBER, "rollout": NUMBER, "total": NUMBER},
        "train_tokens_per_s": NUMBER,
        "peak_memory_bytes": _Optional(int),
    },
    "training": {
        "steps": int,
        "tokens": int,
        "final_loss": NUMBER,
        "loss_curve": _ListOf(_ListOf(NUMBER, 2)),
    },
    "offline": {
        "bin_edges": _ListOf(int),
        "n_sequences": int,
        "action_ce": _ListOf(NUMBER),
        "action_acc": _ListOf(NUMBER),
        "obs_ce": _ListOf(NUMBER),
        "reward_mse": _ListOf(NUMBER),
        "overall": {"action_ce": NUMBER, "action_acc": NUMBER, "obs_ce": NUMBER, "reward_mse": NUMBER},
    },
    "interactive": INTERACTIVE,
    "ood": {"by_task": _MapOf(INTERACTIVE), "not_applicable": _MapOf(str)},
}
"""`ood`: one `interactive` record per applicable Table 1 task; `manifest.backbone_source`: digests
of the backbone's source files (`bench.provenance`)."""


def _check(value: Any, spec: Any, where: str, reasons: list[str]) -> None:
    if isinstance(spec, _Optional):
        if value is not None:
            _check(value, spec.spec, where, reasons)
        return
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            reasons.append(f"{where}: expected an object, got {type(value).__name__}")
            return
        for key, sub in spec.items():
            if isinstance(sub, _IfPresent):
                if key in value:
                    _check(value[key], sub.spec, f"{where}.{key}", reasons)
            elif key not in value:
                reasons.append(f"{where}.{key}: missing")
            else:
                _check(value[key], sub, f"{where}.{key}", reasons)
        return
    if isinstance(spec, _MapOf):
        if not isinstance(value, dict):
            reasons.append(f"{where}: expected an object, got {type(value).__name__}")
            return
        for key, item in value.items():
            _check(item, spec.spec, f"{where}.{key}", reasons)
        return
    if isinstance(spec, _ListOf):
        if not isinstance(value, list):
            reasons.append(f"{where}: expected a list, got {type(value).__name__}")
            return
        if spec.length is not None and len(value) != spec.length:
            reasons.append(f"{where}: expected {spec.length} items, got {len(value)}")
        for i, item in enumerate(value):
            _check(item, spec.spec, f"{where}[{i}]", reasons)
        return
    if spec is NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            reasons.append(f"{where}: expected a number, got {type(value).__name__}")
        elif not math.isfinite(value):
            reasons.append(f"{where}: not finite ({value})")
        return
    if spec is int:
        if isinstance(value, bool) or not isinstance(value, int):
            reasons.append(f"{where}: expected an integer, got {type(value).__name__}")
        return
    if not isinstance(value, spec):
        reasons.append(f"{where}: expected {spec.__name__}, got {type(value).__name__}")


def _check_curve_lengths(summary: dict, where: str, reasons: list[str]) -> None:
    curve = summary.get("curve")
    if isinstance(curve, dict) and all(isinstance(curve.get(k), list) for k in CURVE):
        lengths = {k: len(curve[k]) for k in CURVE}
        if len(set(lengths.values())) != 1:
            reasons.append(f"{where}.curve: t/mean/lo/hi differ in length {lengths}")


def check_result(doc: Any) -> list[str]:
    """Every way `doc` departs from the schema, as one-line reasons; empty when valid."""
    if not isinstance(doc, dict):
        return [f"result: expected a JSON object, got {type(doc).__name__}"]
    if doc.get("kind") != KIND:
        return [f"result.kind: expected {KIND!r}, got {doc.get('kind')!r}"]
    if doc.get("schema_version") not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        return [
            f"result.schema_version: {doc.get('schema_version')!r} is not supported; this code reads {readable} "
            "(older files hold biased single-rollout scores: rerun the run, or delete the file)"
        ]
    reasons: list[str] = []
    _check(doc, SCHEMA, "result", reasons)
    for field in ("preset", "arch"):
        if isinstance(doc.get(field), str) and not _NAME.match(doc[field]):
            reasons.append(f"result.{field}: {doc[field]!r} is not a plain name (letters, digits, _ . -)")
    agents = doc.get("interactive", {}).get("agents", {}) if isinstance(doc.get("interactive"), dict) else {}
    for name, agent in agents.items() if isinstance(agents, dict) else ():
        if not isinstance(agent, dict):
            continue
        if isinstance(agent.get("overall"), dict):
            _check_curve_lengths(agent["overall"], f"result.interactive.agents.{name}.overall", reasons)
        for group, summary in (agent.get("groups") or {}).items():
            if isinstance(summary, dict):
                _check_curve_lengths(summary, f"result.interactive.agents.{name}.groups.{group}", reasons)
    offline = doc.get("offline")
    if isinstance(offline, dict) and isinstance(offline.get("bin_edges"), list):
        n_bins = len(offline["bin_edges"]) - 1
        for key in ("action_ce", "action_acc", "obs_ce", "reward_mse"):
            if isinstance(offline.get(key), list) and len(offline[key]) != n_bins:
                reasons.append(f"result.offline.{key}: {len(offline[key])} values for {n_bins} bins")
    return reasons


def result_path(root: str | os.PathLike, preset: str, arch: str, seed: int) -> Path:
    """`<root>/<preset>/<arch>/seed<seed>.json`."""
    for label, name in (("preset", preset), ("arch", arch)):
        if not _NAME.match(name):
            raise BenchError(f"{label} {name!r} cannot name a result folder; use letters, digits, _ . -")
    return Path(root) / preset / arch / f"seed{int(seed)}.json"


def arch_dirname(arch: str) -> str:
    """A folder-safe name for an architecture given by short name or `pkg.module:Class` path."""
    return arch if _NAME.match(arch) else re.sub(r"[^A-Za-z0-9_.-]+", "-", arch).strip("-")


def variant_name(arch: str, arch_kwargs: dict[str, Any]) -> str:
    """The result name of `arch` built with constructor arguments `arch_kwargs` over its preset's:
    `arch_dirname(arch)` itself when there are none, else with `_kw` and 8 hex digits of their digest
    (so that a variant never shares a row, a folder or a checkpoint with the preset's backbone)."""
    if not arch_kwargs:
        return arch_dirname(arch)
    digest = hashlib.sha256(json.dumps(arch_kwargs, sort_keys=True).encode()).hexdigest()[:8]
    return f"{arch_dirname(arch)}_kw{digest}"


def write_result(doc: dict, root: str | os.PathLike = "results") -> Path:
    """Check `doc` and write it atomically to its place under `root`; returns the path."""
    reasons = check_result(doc)
    if reasons:
        raise BenchError(f"result does not follow schema v{SCHEMA_VERSION}: {reasons[0]} (+{len(reasons) - 1} more)")
    path = result_path(root, doc["preset"], doc["arch"], doc["seed"])
    atomic_write(path, (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode())
    return path


def load_result(path: str | os.PathLike) -> tuple[dict | None, list[str]]:
    """(document, reasons): the parsed document and why it is invalid (empty reasons: valid).

    The document is None when the file cannot be read or parsed."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        return None, [f"{path}: cannot read ({err.strerror or err})"]
    try:
        doc = json.loads(text, parse_constant=lambda name: _reject_constant(name))
    except (ValueError, json.JSONDecodeError) as err:
        return None, [f"{path}: not valid JSON ({err})"]
    return doc, check_result(doc)


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def iter_results(root: str | os.PathLike = "results") -> list[Path]:
    """Every `seed<k>.json` under `<root>/<preset>/<arch>/`, sorted."""
    return sorted(Path(root).glob("*/*/seed*.json"))


def example_result(preset: str = "tiny", arch: str = "gdn", seed: int = 0, score: float = 0.5) -> dict:
    """A small valid document (two tasks in one ns group, 8 scored steps) for tests of readers;
    its summaries are computed from its per-task anchored scores, as `bench.report.validate`
    recomputes them."""
    import numpy as np

    from bench import metrics

    def agent(level: float) -> dict:
        curves = np.array([[level / 2] + [level] * 7, [0.0] + [level] * 7])
        few = np.array([level * 0.75, level * 0.5])
        return metrics.agent_record(
            curves, few, np.array([8, 8]), ["ns=8"] * 2, np.zeros(2), np.ones(2), 8, 100, metrics.BOOTSTRAP_SEED
        )

    levels = {"model": score, "oracle": 1.0, "random": 0.0, "tql_ucb": 0.3}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "preset": preset,
        "arch": arch,
        "seed": seed,
        "manifest": {
            "created_utc": "2026-01-01T00:00:00Z",
            "command": ["python", "-m", "bench", "run", "--arch", arch],
            "git_commit": None,
            "git_dirty": None,
            "packages": {"torch": "0", "numpy": "0"},
            "python": "3.11",
            "platform": "example",
            "device": "cpu",
            "torch_threads": 1,
            "dataset_fingerprint": "0" * 64,
            "preset_digest": "0" * 64,
            "arch_class": f"architectures.{arch}:Example",
            "backbone_source": {"sha256": "0" * 64, "files": {}},
            "arch_kwargs": {},
            "param_count": {"backbone": 1, "total": 2},
            "state_size": 1,
            "wall_time_s": {"data": 0.0, "train": 0.0, "offline_eval": 0.0, "rollout": 0.0, "total": 0.0},
            "train_tokens_per_s": 1.0,
            "peak_memory_bytes": None,
        },
        "training": {"steps": 1, "tokens": 1, "final_loss": 1.0, "loss_curve": [[1, 1.0]]},
        "offline": {
            "bin_edges": [0, 1, 2],
            "n_sequences": 1,
            "action_ce": [1.0, 0.5],
            "action_acc": [0.5, 0.7],
            "obs_ce": [1.0, 0.9],
            "reward_mse": [0.1, 0.1],
            "overall": {"action_ce": 0.75, "action_acc": 0.6, "obs_ce": 0.95, "reward_mse": 0.1},
        },
        "interactive": {
            "eval_steps": 8,
            "n_tasks": 2,
            "skipped_tasks": 0,
            "gap_threshold": 0.01,
            "bootstrap_samples": 100,
            "rollouts": 1,
            "rollout_seed": 0,
            "rollout_noise": {name: [] for name in levels},
            "agents": {name: agent(level) for name, level in levels.items()},
        },
        "ood": {"by_task": {}, "not_applicable": {"cliffwalking": "49 states; the example model embeds 8"}},
    }
