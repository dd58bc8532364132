"""The source a backbone was built from, as sha256 digests, for result manifests and validation.

A backbone's source is its class's module file and, transitively, every module of the same
top-level package that those files import (found by parsing their import statements, so the set
does not depend on what else happens to be imported). Shipped backbones and `pkg.module:Class`
backbones are treated alike; paths are relative to the package's parent folder.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from pathlib import Path


def _module_file(name: str) -> Path | None:
    """The source file of module `name`, or None (not a module: an imported class or function)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _imported_modules(path: Path, module: str) -> set[str]:
    """Absolute names of the modules `path` (module `module`) imports, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def source_files(cls: type) -> dict[str, Path]:
    """Relative path -> file of the backbone class's module and the same-package modules it imports."""
    root_package = cls.__module__.split(".")[0]
    pending, seen, files = [cls.__module__], set(), {}
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        depth = len(name.split(".")) - (path.name != "__init__.py")  # folders between the file and the top
        files[path.relative_to(path.parents[depth]).as_posix()] = path
        pending += [m for m in _imported_modules(path, name) if m.split(".")[0] == root_package and m not in seen]
    return dict(sorted(files.items()))


def backbone_source(cls: type) -> dict:
    """{"sha256": digest over all files, "files": {relative path: sha256 of the file}}."""
    digests = {rel: hashlib.sha256(path.read_bytes()).hexdigest() for rel, path in source_files(cls).items()}
    combined = hashlib.sha256("".join(f"{rel}\n{digest}\n" for rel, digest in digests.items()).encode())
    return {"sha256": combined.hexdigest(), "files": digests}
