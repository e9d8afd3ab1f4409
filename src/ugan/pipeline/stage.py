"""What every stage entry point shares: params validated before any work (`params`), and the
wrapper that turns errors a user can act on (`ugan.core.errors.UserError`) into one clear line
and exit 2 while anything else keeps its traceback (`entry_point`, from ugan.core.runtime)."""

from __future__ import annotations

import os

from ugan.config.load import load_params
from ugan.config.schema import Params
from ugan.core.errors import ConfigError
from ugan.core.paths import PARAMS_FILE
from ugan.core.runtime import entry_point

__all__ = ["entry_point", "params", "run_key"]


def params() -> Params:
    return load_params(PARAMS_FILE)


def run_key(argv: tuple[str, ...], stage: str) -> str:
    """The run a `foreach` stage works on: the command-line argument when one is given, else the
    part after `@` of DVC's `DVC_STAGE` (`train_gan@<key>`). dvc.yaml never puts `${key}` in a
    `cmd`: DVC runs it through a shell, and a key is user text that is validated only here
    (`p.run(key)` names the allowed keys)."""
    if argv:
        return argv[0]
    address = os.environ.get("DVC_STAGE", "")
    name, _, key = address.rpartition(":")[2].partition("@")
    if name != stage or not key:
        raise ConfigError(f"usage: python stages/{stage}.py RUN_KEY (or dvc repro {stage}@RUN_KEY)")
    return key
