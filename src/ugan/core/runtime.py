"""What every stage runs on: the device, seeding, and progress bars that are live in a terminal
and stay readable in CI logs (a line every 15 s instead of a carriage-return storm)."""

from __future__ import annotations

import functools
import random
import sys
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ugan.core.errors import DeviceError, UserError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when a GPU is visible, else the CPU; `cuda` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device: cuda was requested but no CUDA GPU is visible")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a dedicated generator for the data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def progress(total: int, desc: str, unit: str = "step"):
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=interactive,
        ncols=None if interactive else 100,
        mininterval=0.2 if interactive else 15.0,
        ascii=not interactive,
        leave=True,
    )


def entry_point(main: Callable[..., object]) -> Callable[[], None]:
    """Wrap a command's main (a DVC stage, the torchrun trainer): `main(*sys.argv[1:])`; a
    `UserError` prints `error: …` and exits 2, Ctrl-C / SIGTERM exit 130, anything else keeps
    its traceback (a bug, or a fault the user cannot fix by editing params)."""

    @functools.wraps(main)
    def run() -> None:
        try:
            main(*sys.argv[1:])
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return run
