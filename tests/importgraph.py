"""The ugan import graph (`ugan.core.imports`: every `import`, function-level ones included),
for the layering test and the test that dvc.yaml's `deps:` cover each stage's import closure.

`python tests/importgraph.py` prints, per DVC stage, the smallest deps list that covers its
closure (a folder where the stage imports every module in it, else the files);
`python tests/importgraph.py --write` puts those lists into dvc.yaml in place of each stage's
code deps (`stages/…`, `src/…`), keeping its data deps and comments.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from ugan.core.imports import closure_of_file, module_file

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "ugan"

# Low → high. A module may import its own layer and those to its left, never to its right.
LAYERS = [
    "core",
    "tracking",
    "data",
    "nets",
    "losses",
    "models",
    "methods",
    "config",
    "training",
    "evaluation",
    "modebench",
    "reporting",
    "pipeline",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> list[str]:
    return sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def layer_of(module: str) -> str:
    """ugan.training.gan → training; ugan.losses → losses; ugan → '' (the root package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def stage_scripts(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, tuple[Path, list[str]]]:
    """DVC stage name → (its script, its deps as written)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    found = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        script = re.search(r"python\s+(stages/\S+\.py)", body["cmd"])
        if script:
            found[name] = (ROOT / script.group(1), [str(d) for d in body.get("deps", [])])
    return found


def closure_files(script: Path) -> set[Path]:
    """The files `script` may execute. Package `__init__.py` files are left out: they hold a
    docstring and nothing else (tests/test_layers.py checks it), so editing one changes no
    behaviour, and listing each in every stage would only make dvc.yaml harder to read."""
    return {f for m in closure_of_file(script) if (f := module_file(m)).name != "__init__.py"}


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


def minimal_deps(files: set[Path]) -> list[str]:
    """Folders whose every .py file is in `files` (largest first), then the remaining files."""
    deps: list[str] = []
    remaining = set(files)

    def visit(folder: Path) -> None:
        nonlocal remaining
        inside = {p for p in folder.rglob("*.py") if p.name != "__init__.py"}
        if inside and inside <= remaining:
            deps.append(folder.relative_to(ROOT).as_posix())
            remaining -= inside
            return
        for child in sorted(p for p in folder.iterdir() if p.is_dir()):
            visit(child)

    for child in sorted(p for p in PACKAGE.iterdir() if p.is_dir()):
        visit(child)
    deps += sorted(p.relative_to(ROOT).as_posix() for p in remaining)
    return deps


def code_deps(script: Path) -> list[str]:
    return [script.relative_to(ROOT).as_posix(), *minimal_deps(closure_files(script))]


def write_deps(dvc_yaml: Path = ROOT / "dvc.yaml") -> None:
    """Replace each stage's code deps in dvc.yaml by `code_deps` of its script, in place."""
    scripts = stage_scripts(dvc_yaml)
    lines, out, stage, i = dvc_yaml.read_text().split("\n"), [], None, 0
    while i < len(lines):
        line = lines[i]
        if match := re.match(r"^  (\w+):", line):
            stage = match.group(1)
        out.append(line)
        i += 1
        if not (re.match(r"^\s+deps:\s*$", line) and stage in scripts):
            continue
        indent = re.match(r"^(\s*)", lines[i]).group(1)
        kept = []
        while i < len(lines) and lines[i].startswith((indent + "- ", indent + "#")):
            if not lines[i].strip().startswith(("- stages/", "- src/")):
                kept.append(lines[i])
            i += 1
        out += [f"{indent}- {dep}" for dep in code_deps(scripts[stage][0])] + kept
    dvc_yaml.write_text("\n".join(out))


def main() -> None:
    if "--write" in sys.argv[1:]:
        write_deps()
        return
    for name, (script, _) in stage_scripts().items():
        print(f"{name}:")
        for dep in code_deps(script):
            print(f"  - {dep}")


if __name__ == "__main__":
    sys.exit(main())
