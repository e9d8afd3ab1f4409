"""What every stage entry point shares: params validated before any work, and errors a user can
act on (`ugan.core.errors.UserError`) turned into one clear line and exit 2. Anything else is a
bug or a fault the user cannot fix by editing params: it keeps its traceback (exit 1)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from ugan.config.load import load_params
from ugan.config.schema import Params
from ugan.core.errors import UserError
from ugan.core.paths import PARAMS_FILE


def params() -> Params:
    return load_params(PARAMS_FILE)


def entry_point(main: Callable[..., object]) -> Callable[[], None]:
    """Wrap a stage's main: exit 2 with `error: …` on a user error, 130 on Ctrl-C/SIGTERM."""

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
