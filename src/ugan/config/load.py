"""Loading params: `params.yaml` → a validated `Params`, or one `ConfigError` for the user.

`parse_params` turns pydantic's errors into a single message with one line per offending key
(its dotted path, e.g. `gan.began.gamma`) and what is allowed there: for an unknown key, the
keys that section accepts; for a wrong literal, the allowed values. Cross-section checks
(`ugan.config.checks`) name their own keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from ugan.config.schema import Params
from ugan.core.errors import ConfigError


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "<top level>"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{where}: got {error.get('input')!r}, allowed values are {expected}"
    if kind == "value_error" and not error["loc"]:  # a cross-section check names its own keys
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return f"{where}: {error['msg']} (got {error.get('input')!r})"


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation: `X`, `X | None` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _section_model(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys the section at `loc` accepts, so an 'unknown key' error lists the valid ones."""
    model: type[BaseModel] | None = Params
    parts = list(loc[:-1])
    while parts and model is not None:
        field = model.model_fields.get(str(parts.pop(0)))
        if field is None:
            return []
        model = _section_model(field.annotation)
        if field.annotation is not None and get_origin(field.annotation) is dict and parts:
            parts.pop(0)  # skip the user's own key, e.g. the run name under `runs`
    return sorted(model.model_fields) if model is not None else []


def parse_params(raw: dict[str, Any] | None) -> Params:
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            line = _describe(error)
            if error["type"] == "extra_forbidden":
                allowed = _allowed_keys(tuple(error["loc"]))
                if allowed:
                    line += f"; allowed keys are {allowed}"
            lines.append(line)
        raise ConfigError("invalid params:\n  " + "\n  ".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw)
