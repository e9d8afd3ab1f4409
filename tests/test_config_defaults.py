"""One source of defaults: params.yaml writes out every default of the params models.

A key the user leaves out takes the model's default; `make run` reads params.yaml. The two must
agree, so a default changed on one side only fails here, naming the key. Left out: the user's
own content (`runs`, `modes`: entries without defaults) and `data.path`, the location of the
user's data: the model leaves it unset so that a source which reads files asks for it, while
params.yaml sets it because dvc.yaml depends on `${data.path}` (data/sources/README.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from ugan.config.load import parse_params
from ugan.config.schema import Params

ROOT = Path(__file__).resolve().parents[1]
NOT_DEFAULTS = {"runs", "modes", "data.path"}  # the user's content and data location


def _differences(
    default: BaseModel, loaded: BaseModel, written: dict[str, Any], where: str = ""
) -> Iterator[str]:
    """Each key (dotted) whose value in params.yaml is not the model's default, depth first."""
    for key in type(default).model_fields:
        name = f"{where}{key}"
        if name in NOT_DEFAULTS:
            continue
        value = getattr(default, key)
        if key not in written:
            yield f"{name}: missing from params.yaml (the model's default is {value!r})"
        elif isinstance(value, BaseModel) and isinstance(written[key], dict):
            yield from _differences(value, getattr(loaded, key), written[key], f"{name}.")
        elif getattr(loaded, key) != value:
            yield f"{name}: params.yaml has {written[key]!r}, the model's default is {value!r}"
    for key in written.keys() - type(default).model_fields.keys():
        yield f"{where}{key}: in params.yaml but not a field of {type(default).__name__}"


def _check(written: dict[str, Any]) -> list[str]:
    return list(_differences(Params.model_validate({}), parse_params(written), written))


def test_params_yaml_writes_out_the_model_defaults():
    differences = _check(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert not differences, (
        f"params.yaml and the defaults in src/ugan/config/schema.py differ at {differences[0]}"
        + (f" (and {len(differences) - 1} more)" if len(differences) > 1 else "")
    )


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("vae", "steps", 7), ("gan.began", "gamma", 0.7), ("perf", "loss_sync", "step")],
)
def test_a_value_changed_on_one_side_only_is_named(section, key, value):
    written = Params.model_validate({}).model_dump()  # the defaults, written out
    node = written
    for part in section.split("."):
        node = node[part]
    node[key] = value
    (first,) = _check(written)
    assert first.startswith(f"{section}.{key}: params.yaml has {value!r}, the model's default")
    del node[key]
    assert _check(written)[0].startswith(f"{section}.{key}: missing from params.yaml")
