"""A lock file that is gone again once released.

`fcntl.flock` on a file in the temp folder serialises processes of one machine, but the file
stays behind: one per pipeline execution and store (2,000 of them in /tmp after a few days of
tests). Unlinking it on release is only safe with a check: a process that opened the path just
before the unlink waits on the old inode and would enter beside a process that locked a freshly
created one. So a holder re-checks, once it has the lock, that the path still names the file it
locked, and starts over if not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def _lock_current(path: Path) -> int:
    """An fd holding an exclusive flock on the file `path` names now (created if missing)."""
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # unlinked (and maybe re-created) while we waited: lock the current one


@contextlib.contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `path` across processes; the file is removed on release."""
    path = Path(path)
    fd = _lock_current(path)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still holding it: late openers see the inode change
        os.close(fd)
