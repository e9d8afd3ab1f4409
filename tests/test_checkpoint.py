import dataclasses
import os
import re

import pytest
import torch

from ugan.core.checkpoint_io import load_checkpoint, save_checkpoint
from ugan.core.errors import CheckpointError
from ugan.nets.dcgan import Generator
from ugan.nets.generator_file import generator_payload, load_generator


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


# A full disk: tests/test_faults_on_disk.py, on a real full filesystem.


def test_a_generator_file_whose_weights_do_not_fit_its_arch_is_named_with_the_shapes(
    tmp_path, tiny_arch
):
    wider = dataclasses.replace(tiny_arch, base_channels=tiny_arch.base_channels * 2)
    path = tmp_path / "generator_step_000010.pt"
    save_checkpoint(path, {**generator_payload(Generator(wider)), "arch": tiny_arch.to_dict()})
    with pytest.raises(
        CheckpointError,
        match=rf"^{re.escape(str(path))}: its weights do not fit the dcgan generator its `arch` "
        r"describes \('project\.0\.weight': file \(784, 8\) vs net \(392, 8\);",
    ):
        load_generator(path)


@pytest.mark.parametrize("key", ["arch", "state_dict"])
def test_a_generator_file_without_arch_or_weights_is_named(tmp_path, tiny_arch, key):
    path = tmp_path / "g.pt"
    payload = generator_payload(Generator(tiny_arch))
    del payload[key]
    save_checkpoint(path, payload)
    with pytest.raises(CheckpointError, match=rf"g\.pt: not a generator file: no '{key}' in it"):
        load_generator(path)
    save_checkpoint(path, {**generator_payload(Generator(tiny_arch)), "arch": {"depth": 3}})
    with pytest.raises(CheckpointError, match=r"g\.pt: its `arch` \{'depth': 3\} is no ArchConfig"):
        load_generator(path)
