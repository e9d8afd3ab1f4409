"""The ugan import graph, read from the source: every `import` of a file, function-level ones
included (ugan imports nothing by name at run time: no importlib, no registry of strings, so
these are all the modules a file can run).

Used to fingerprint what a computation runs (`ugan.modebench.runner.code_digest`: a mode cell
is retrained when a module it can execute changes, not when the report's code does) and by the
tests that check the layering and each DVC stage's deps (`tests/importgraph.py`).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]  # the folder holding the `ugan` package


def module_file(name: str, src: Path = SRC) -> Path | None:
    """ugan.a.b → src/ugan/a/b.py or src/ugan/a/b/__init__.py (None if neither exists)."""
    base = src.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_parents(name: str) -> list[str]:
    """Importing ugan.a.b runs ugan/__init__, ugan/a/__init__ and ugan/a/b."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imports_of_file(path: Path, src: Path = SRC) -> frozenset[str]:
    """The ugan modules a file imports anywhere in it (parents included)."""
    return _imports(path, src, path.stat().st_mtime_ns)  # an edited file is read again


@cache
def _imports(path: Path, src: Path, _mtime_ns: int) -> frozenset[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "ugan" or name.startswith("ugan."):
                found.update(m for m in _with_parents(name) if module_file(m, src))
    return frozenset(found)


def imports_of(module: str, src: Path = SRC) -> frozenset[str]:
    path = module_file(module, src)
    return imports_of_file(path, src) - {module} if path else frozenset()


def closure_of_file(path: Path, src: Path = SRC) -> set[str]:
    """Every ugan module that running `path` may execute."""
    seen: set[str] = set()
    todo = list(imports_of_file(path, src))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imports_of(module, src))
    return seen


def closure_of(module: str, src: Path = SRC) -> set[str]:
    """`module` and every ugan module importing it may execute."""
    path = module_file(module, src)
    if path is None:
        raise ModuleNotFoundError(f"no module {module!r} under {src}")
    return {module, *closure_of_file(path, src)}
