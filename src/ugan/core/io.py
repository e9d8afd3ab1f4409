"""Atomic writes, safe loads, and file digests.

Every file the pipeline produces goes through `atomic_write`: the bytes land in a temporary
file in the destination folder and are renamed into place only once complete, so a crash or a
full disk never leaves a half-written file under the final name. A full disk (or quota, or
file-size limit) is a `DiskFullError` naming the file, a read-only folder a `NotWritableError`
naming the folder: both are user errors (`error: …`, exit 2), with the temporary file removed and
the previous file intact. Torch-free, so that a stage that only moves files (prepare, report)
starts without importing torch; checkpoints are `ugan.core.checkpoint_io`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ugan.core.errors import DiskFullError, NotWritableError

_UMASK = os.umask(0)
os.umask(_UMASK)


# errno → (what happened, what frees the way) for a write that ran out of room.
NO_SPACE = {
    errno.ENOSPC: ("no space left on device", "free space"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota"),
    errno.EFBIG: ("file too large (a file-size limit: `ulimit -f`)", "raise the limit"),
}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def _free_space(folder: Path) -> str:
    try:
        return f", {shutil.disk_usage(folder).free / 2**20:.1f} MiB free there"
    except OSError:
        return ""


def write_error(path: Path, exc: OSError) -> DiskFullError | NotWritableError | None:
    """The user error for an OSError met writing `path` (a full disk, a read-only folder), or
    None when it is neither."""
    if exc.errno in NO_SPACE:
        what, action = NO_SPACE[exc.errno]
        error: DiskFullError | NotWritableError = DiskFullError(
            f"{path}: {what} ([Errno {exc.errno}] {exc.strerror}{_free_space(path.parent)}); "
            f"nothing was overwritten, {action} and rerun"
        )
    elif exc.errno in NOT_WRITABLE:
        folder = path  # the nearest existing folder: the one that refused
        while not folder.is_dir() and folder.parent != folder:
            folder = folder.parent
        error = NotWritableError(
            f"{folder}: cannot write there ([Errno {exc.errno}] {exc.strerror}); nothing was "
            f"written: make it writable (`chmod u+w`, or remount it read-write) and rerun"
        )
    else:
        return None
    return error


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """An OSError of writing `path` inside the block: a full disk or a read-only folder as the
    user error naming it (`write_error`), any other fault as it is."""
    try:
        yield
    except OSError as exc:
        error = write_error(path, exc)
        if error is None:
            raise
        raise error from exc


def ensure_writable(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and prove a file can be made in it (then removed), so that a
    read-only folder stops a stage before any work, with the error the first write would give."""
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".ugan-write-check.", dir=folder)
    os.close(fd)
    os.unlink(name)
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    A full disk or a read-only folder raises `DiskFullError` / `NotWritableError`."""
    final = Path(path)
    with writing(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file ordinary permissions
        try:
            yield tmp
        except OSError as exc:  # the block's own write to `tmp`: only running out of room is ours
            if exc.errno not in NO_SPACE:
                raise
            raise write_error(final, exc) from exc
        with writing(final):
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
