"""What every stage entry point shares: params validated before any work (`params`), and the
wrapper that turns errors a user can act on (`ugan.core.errors.UserError`) into one clear line
and exit 2 while anything else keeps its traceback (`entry_point`, from ugan.core.runtime)."""

from __future__ import annotations

from ugan.config.load import load_params
from ugan.config.schema import Params
from ugan.core.paths import PARAMS_FILE
from ugan.core.runtime import entry_point

__all__ = ["entry_point", "params"]


def params() -> Params:
    return load_params(PARAMS_FILE)
