import errno
import os

import pytest
import torch

from ugan.core.errors import CheckpointError
from ugan.core.io import load_checkpoint, save_checkpoint


def test_roundtrip_and_no_temp_left(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.arange(3), "step": 7})
    assert load_checkpoint(path)["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_written_files_get_ordinary_permissions(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"step": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.randn(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="c.pt"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch SENTINEL",))


def test_pickle_payload_is_refused_and_runs_no_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"evil": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "SENTINEL").exists()


def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1})

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", no_space)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
