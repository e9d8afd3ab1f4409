"""What every stage entry point shares: params validated before any work (`params`), and the
wrapper that turns errors a user can act on (`ugan.core.errors.UserError`) into one clear line
and exit 2 while anything else keeps its traceback (`entry_point`, from ugan.core.runtime)."""

from __future__ import annotations

import os

# Before anything loads torch's OpenMP, which reads its wait policy once: idle threads sleep at
# once instead of spinning 300,000 times, so stage processes sharing the cores (a queue, a grid
# beside a test, mode-cell workers, which inherit it) do not burn each other's time. Measured
# beside other jobs: a BEGAN step at 2 threads 0.6 → 3.7 steps/s (benchmarks/omp_wait.py).
# A user's own OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ugan.config.load import load_params  # noqa: E402  (after the OpenMP setting)
from ugan.config.schema import Params  # noqa: E402
from ugan.core.errors import ConfigError  # noqa: E402
from ugan.core.paths import PARAMS_FILE  # noqa: E402
from ugan.core.runtime import entry_point  # noqa: E402

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
