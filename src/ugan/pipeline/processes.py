"""How `ugan` commands run the long-lived programs they wrap (`dvc repro`, `dvc exp run`, the
MLflow server) so that stopping `ugan` stops them too and leaves the user's files as they were.

`main` turns SIGTERM into KeyboardInterrupt (`stop_on_sigterm`), so a CI cancel unwinds like
Ctrl-C: `finally` blocks run. Each child gets its own process group; when `ugan` is interrupted
the whole group gets SIGTERM (DVC and the stage it runs, the MLflow server and its workers), and
is killed if it has not exited after a grace period. A stage saves its state on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from ugan.core.errors import UserError
from ugan.core.io import atomic_write_bytes, atomic_write_text

GRACE_SECONDS = 60.0  # a training stage finishes its step and saves its state within this


class PortInUseError(UserError):
    """The port a server was asked to listen on is taken."""


def stop_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def stop_group(child: subprocess.Popen, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to the child's process group, SIGKILL to what is left of it after `grace` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    # The leader may be gone while its workers still run: whatever is left of the group dies.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def call(cmd: list[str], env: dict | None = None, grace: float = GRACE_SECONDS) -> int:
    """`subprocess.call`, except that an interrupt of this process stops the child's group."""
    child = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return child.wait()
    except BaseException:
        stop_group(child, grace)
        raise


@contextlib.contextmanager
def params_swapped(path: Path, text: str) -> Iterator[None]:
    """`path` holds `text` inside the block, and its original bytes again after it, however the
    block ends (an error, Ctrl-C, SIGTERM once `stop_on_sigterm` is set). Both writes are
    atomic: the file is never half-written."""
    original = path.read_bytes()
    atomic_write_text(path, text)
    try:
        yield
    finally:
        atomic_write_bytes(path, original)


def require_free_port(host: str, port: int) -> None:
    """Fail before starting a server whose port is taken (the server itself would only log
    the error and exit 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"port {port} on {host} is in use ({exc.strerror}); pass --port with a free one"
            ) from None
