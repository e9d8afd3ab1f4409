"""constraints.txt (the Makefile installs with `pip install -c`) pins every package
pyproject.toml asks for, so a fresh venv gets the versions the committed results came from."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_dependency_of_pyproject_is_pinned_in_constraints():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    asked = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    pinned = {
        _name(line): line.split("==", 1)[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    missing = sorted({_name(r) for r in asked} - set(pinned))
    assert not missing, f"not pinned in constraints.txt (run `make lock`): {missing}"
    assert pinned["torch"] == "2.14.1"  # the wheel the Makefile installs first
