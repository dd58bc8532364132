"""The dependency rule of docs/design.md: library modules import only along the data flow
(tasks -> data -> recipe -> model -> train / rollout -> evaluate -> report); commands may import
anything; the leaves import nothing else of `bench`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEAVES = {"bench.errors", "bench.io", "bench.presets", "bench.options", "bench.distributed", "bench.metrics"}
COMMANDS = {"bench.cli", "bench.__main__", "bench.run", "bench.eval_command", "bench.ood_table", "bench.check_arch",
            "bench.gpu_check", "bench.demo", "bench.data.command", "bench.anymdp.fidelity"}  # fmt: skip
STAGES = [
    ("bench.anymdp",),
    ("bench.data", "bench.suites"),
    ("bench.recipe",),
    ("architectures", "bench.model"),
    ("bench.train", "bench.rollout"),
    ("bench.evaluate",),
    ("bench.report",),
]


def is_command(name: str) -> bool:
    """A command module (or one of the speed suites, which are commands too)."""
    return name in COMMANDS or name == "bench.perf" or name.startswith("bench.perf.")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.split(".")[0] in ("bench", "architectures")}


def stage(name: str) -> int | None:
    """Index of the stage that holds `name` (None for leaves, commands and the package roots)."""
    for index, prefixes in enumerate(STAGES):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    return None


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def repo_modules() -> dict[str, set[str]]:
    """Every module of bench/ and architectures/ and the repository modules it imports."""
    paths = sorted([*ROOT.glob("bench/**/*.py"), *ROOT.glob("architectures/**/*.py")])
    return {module_name(path): {t for t in imports(path) if is_module(t)} for path in paths}


def violations(modules: dict[str, set[str]]) -> list[str]:
    found = []
    for name, targets in modules.items():
        if is_command(name):
            continue
        for target in sorted(targets):
            if name in LEAVES and target not in ("bench.errors", "architectures.errors") and target != name:
                found.append(f"{name} (a leaf) imports {target}")
            elif is_command(target):
                found.append(f"{name} imports the command module {target}")
            elif stage(name) is not None and stage(target) is not None and stage(target) > stage(name):
                found.append(f"{name} imports {target}, which comes later in the data flow")
    return found


def test_library_modules_import_only_along_the_data_flow():
    modules = repo_modules()
    assert {"bench.recipe", "bench.data.shards", "architectures.gdn"} <= set(modules)
    assert violations(modules) == []


def test_the_rule_catches_backward_imports():
    assert violations({"bench.data.shards": {"bench.model"}}) == [
        "bench.data.shards imports bench.model, which comes later in the data flow"
    ]
    assert violations({"bench.metrics": {"bench.anymdp.solvers"}}) == [
        "bench.metrics (a leaf) imports bench.anymdp.solvers"
    ]
    assert violations({"bench.evaluate": {"bench.run"}}) == ["bench.evaluate imports the command module bench.run"]
    assert violations({"bench.train": {"bench.perf.common"}}) == [
        "bench.train imports the command module bench.perf.common"
    ]
    assert violations({"bench.run": {"bench.perf.common"}, "bench.model": {"architectures", "bench.recipe"}}) == []
