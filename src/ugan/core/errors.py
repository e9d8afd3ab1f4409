"""Errors a user can act on. A stage entry point prints `error: <message>` for these (one line,
exit 2) and the Prefect flow does not retry them; every other exception keeps its traceback,
because it is a bug or a fault the user cannot fix by changing params or inputs."""

from __future__ import annotations


class UserError(Exception):
    """Base of every user-actionable error: the message says what to change."""


class ConfigError(UserError, ValueError):
    """Params failed validation; the message names every offending key."""


class InputError(UserError, ValueError):
    """An input file exists but does not hold what the stage needs (wrong format, fields,
    architecture); the message names the file and what was expected."""


class InputMissingError(UserError, FileNotFoundError):
    """An input the stage needs does not exist; the message says which stage or setting
    provides it."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or unsafe."""


class NotWritableError(UserError, PermissionError):
    """A folder the stage writes to is read-only (permissions, a read-only mount); the message
    names the folder. Nothing was written or overwritten."""


class DiskFullError(UserError, OSError):
    """A write ran out of space (no space left, quota, file-size limit); the message names the
    file. The previous file under that name is intact and the temporary file is removed."""


class TransferError(UserError, RuntimeError):
    """The decoder's weights do not fit the generator."""


class AccuracyTooLow(UserError, RuntimeError):
    """The classifier is not good enough to serve as a feature network."""


class ResumeMismatchError(UserError, ValueError):
    """The saved state was made with different params; resuming would silently mix them."""


class RunLockedError(UserError, RuntimeError):
    """Another trainer holds this run's folder."""


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss became NaN or infinite; the run stops before checkpointing the damage."""


class DeviceError(UserError, RuntimeError):
    """The requested device (or precision) is not available on this machine."""
