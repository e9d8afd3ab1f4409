"""Checkpoint files: `torch.save` through the atomic writes of `ugan.core.io`, and loads with
`torch.load(weights_only=True)`, so a checkpoint can carry tensors and plain data but never code;
`state_mismatches` says where a loaded state does not fit the nets it is meant for."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from ugan.core.errors import CheckpointError
from ugan.core.io import atomic_write_bytes


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Serialise `payload` with torch.save into memory, then write it atomically."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`; never executes code from the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / unsafe files
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded safely (truncated, corrupt or carrying "
            f"code): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds {type(payload).__name__}, expected a dict")
    return payload


def _is_module_state(value: Any) -> bool:
    """A module's state dict (or an optimizer's per-parameter state): names → tensors."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and torch.is_tensor(v) for k, v in value.items())
    )


def state_mismatches(saved: Any, expected: Any, where: str = "") -> list[str]:
    """Where `saved` (a loaded state) cannot be loaded into the nets whose state is `expected`:
    in every module state dict of `expected`, the tensors missing, unexpected or of another
    shape, as `'<path>': file <shape> vs net <shape>`. Other dicts are walked by their common
    keys (a whole module state missing is named too); lists and plain values are not compared."""
    if _is_module_state(expected):
        if not isinstance(saved, dict):
            return [f"{where!r}: file holds {type(saved).__name__}, the net a state dict"]
        found = []
        for key in sorted(set(saved) | set(expected)):
            name = f"{where}.{key}" if where else key
            if key not in saved:
                found.append(f"{name!r}: missing from the file")
            elif key not in expected:
                found.append(f"{name!r}: in the file, not in the net")
            elif not torch.is_tensor(saved[key]) or saved[key].shape != expected[key].shape:
                shape = tuple(saved[key].shape) if torch.is_tensor(saved[key]) else saved[key]
                found.append(f"{name!r}: file {shape} vs net {tuple(expected[key].shape)}")
        return found
    if not isinstance(expected, dict) or not isinstance(saved, dict):
        return []
    found = []
    for key, value in expected.items():
        name = f"{where}.{key}" if where else str(key)
        if key in saved:
            found += state_mismatches(saved[key], value, name)
        elif _is_module_state(value):
            found.append(f"{name!r}: missing from the file")
    return found


def describe_mismatches(found: list[str], shown: int = 3) -> str:
    more = f"; … {len(found) - shown} more" if len(found) > shown else ""
    return "; ".join(found[:shown]) + more
