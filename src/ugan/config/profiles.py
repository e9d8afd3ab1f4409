"""Named profiles: a grid of runs (GANs × inits × seeds) plus param overrides, expanded into
the `runs:` of params.yaml so that one DVC experiment trains and evaluates the whole grid.

Run keys read `<gan>[-unbalanced]-s<seed>`, e.g. `wgan-unbalanced-s2`.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, model_validator

from ugan.config.load import parse_params
from ugan.config.schema import Params, Strict
from ugan.core.errors import ConfigError

PROFILES_DIR = Path("profiles")


class Grid(Strict):
    gans: dict[str, dict[str, Any]] = Field(min_length=1)
    inits: list[str] = Field(default=["random", "vae"], min_length=1)
    seeds: list[int] = Field(default=[0], min_length=1)


class Profile(Strict):
    """A `grid` to expand, or explicit `runs` (when not every combination exists)."""

    description: str = ""
    params: dict[str, Any] = {}
    grid: Grid | None = None
    runs: dict[str, dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _grid_or_runs(self) -> Profile:
        if (self.grid is None) == (self.runs is None):
            raise ValueError("a profile sets exactly one of `grid` and `runs`")
        return self


def available(root: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(root).glob("*.yaml"))


def load_profile(name: str, root: Path = PROFILES_DIR) -> Profile:
    path = Path(root) / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown profile {name!r}; available profiles are {available(root)}")
    try:
        return Profile.model_validate(yaml.safe_load(path.read_text()))
    except Exception as exc:
        raise ConfigError(f"profile {path}: {exc}") from None


def run_key(gan: str, init: str, seed: int) -> str:
    return f"{gan}{'-unbalanced' if init == 'vae' else ''}-s{seed}"


def expand(profile: Profile) -> dict[str, dict[str, Any]]:
    if profile.runs is not None:
        return copy.deepcopy(profile.runs)
    runs = {}
    for gan, overrides in profile.grid.gans.items():
        for init in profile.grid.inits:
            for seed in profile.grid.seeds:
                runs[run_key(gan, init, seed)] = {"init": init, **overrides, "seed": seed}
    return runs


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_profile(raw_params: dict[str, Any], profile: Profile) -> tuple[dict[str, Any], Params]:
    """params.yaml content with the profile applied (its runs replace `runs:`), validated."""
    merged = _merge(raw_params, profile.params)
    merged["runs"] = expand(profile)
    return merged, parse_params(merged)


def _update_in_place(node: Any, new: dict[str, Any]) -> None:
    """Make the round-trip mapping `node` equal `new`, keeping the comments of every key that
    stays (ruamel attaches a comment to the key it follows)."""
    for key in [k for k in node if k not in new]:
        del node[key]
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(node.get(key), dict):
            _update_in_place(node[key], value)
        elif node.get(key) != value or key not in node:
            node[key] = copy.deepcopy(value)


def render_params(original_text: str, merged: dict[str, Any]) -> str:
    """params.yaml text holding `merged`, written over `original_text` so that its comments,
    key order and layout survive where the values did not change."""
    from ruamel.yaml import YAML  # DVC's own YAML library: round-trips comments

    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    document = yaml_rt.load(original_text) or {}
    _update_in_place(document, merged)
    out = io.StringIO()
    yaml_rt.dump(document, out)
    return out.getvalue()
