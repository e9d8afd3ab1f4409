"""The package's shape, read from the source: layers that import only downwards (function-level
imports included), no import cycle, no module over 400 lines, package __init__ files that import
nothing (so importing one module never drags in its siblings, and DVC deps stay precise)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from importgraph import LAYERS, PACKAGE, ROOT, all_modules, layer_of

from ugan.core.imports import closure_of_file, imports_of, module_file

MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 8


def _rank(module: str) -> int:
    layer = layer_of(module)
    return -1 if layer == "" else LAYERS.index(layer)


def test_every_package_and_top_level_module_is_a_known_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    tops -= {"__init__", "__pycache__"}
    assert tops <= set(LAYERS), f"not in importgraph.LAYERS: {sorted(tops - set(LAYERS))}"


@pytest.mark.parametrize("module", all_modules())
def test_a_module_imports_only_its_own_layer_and_those_below(module):
    upward = sorted(m for m in imports_of(module) if _rank(m) > _rank(module))
    assert not upward, f"{module} ({layer_of(module)}) imports higher layers: {upward}"


def test_tracking_depends_on_core_only():
    for module in (m for m in all_modules() if layer_of(m) == "tracking"):
        others = {layer_of(m) for m in imports_of(module)} - {"", "core", "tracking"}
        assert not others, f"{module} imports {others}"


def test_there_is_no_import_cycle():
    graph = {m: set(imports_of(m)) for m in all_modules()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("module", all_modules())
def test_no_module_is_over_400_lines(module):
    lines = len(module_file(module).read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (split it by job)"


def test_few_modules_sit_directly_in_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("package", [m for m in all_modules() if module_file(m).stem == "__init__"])
def test_package_init_files_hold_a_docstring_only(package):
    """Nothing to run: importing one module never drags in its siblings, and the DVC deps may
    leave __init__ files out (tests/importgraph.py)."""
    body = ast.parse(module_file(package).read_text()).body
    code = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    code = [n for n in code if not (isinstance(n, ast.Assign) and package == "ugan")]  # __version__
    assert not code, f"{package}/__init__.py runs code: import the module you need directly"


# Stages that compute nothing start without torch (~2 s of a stage's start on 2 cores), and so
# does the `ugan` command: what validates params (config) and moves files is torch-free.
TORCH = {"torch", "torchvision", "torch_fidelity"}
TORCH_FREE_PROGRAMS = {
    "stages/prepare.py": "prepare",
    "stages/report.py": "report",
    "src/ugan/pipeline/cli.py": "ugan.pipeline.cli",
}


def _top_level_imports(path) -> set[str]:
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("program", sorted(TORCH_FREE_PROGRAMS))
def test_stages_that_compute_nothing_import_no_torch(program):
    """Proven by importing the program in a fresh interpreter (a third-party import could
    bring torch in too); for a stage, also read from the source: no module it may run (its
    function-level imports included) imports torch at its top. The `ugan` command imports
    training and evaluation inside the commands that use them."""
    script = ROOT / program
    if program.startswith("stages/"):
        heavy = {
            module: sorted(_top_level_imports(module_file(module)) & TORCH)
            for module in sorted(closure_of_file(script))
            if _top_level_imports(module_file(module)) & TORCH
        }
        assert not heavy, f"{program} imports torch through {heavy}"
    probe = (
        f"import sys; sys.path[:0] = [{str(ROOT / 'src')!r}, {str(script.parent)!r}]; "
        f"import {TORCH_FREE_PROGRAMS[program]}; "
        f"print(sorted(m for m in {sorted(TORCH)!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]", f"importing {program} loaded {loaded}"
