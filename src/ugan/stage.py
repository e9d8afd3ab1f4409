"""What every stage entry point shares: params validated before any work, the device, the
MLflow run, and errors turned into one clear line and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

from ugan.checkpoint import CheckpointError
from ugan.classify import AccuracyTooLow
from ugan.config import ConfigError, Params, load_params
from ugan.resume import ResumeMismatchError, RunLockedError
from ugan.train import NonFiniteLossError
from ugan.transfer import TransferError

PARAMS_FILE = Path("params.yaml")
# Errors a user can act on: print the message alone, no traceback.
USER_ERRORS = (
    ConfigError,
    CheckpointError,
    TransferError,
    AccuracyTooLow,
    ResumeMismatchError,
    RunLockedError,
    NonFiniteLossError,
    FileNotFoundError,
    ValueError,
)


def params() -> Params:
    return load_params(PARAMS_FILE)


def entry_point(main: Callable[..., object]) -> Callable[[], None]:
    """Wrap a stage's main: exit 2 with `error: …` on a user error, 130 on Ctrl-C/SIGTERM."""

    @functools.wraps(main)
    def run() -> None:
        try:
            main(*sys.argv[1:])
        except USER_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return run
