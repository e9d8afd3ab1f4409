"""Faults of the disk, injected for real: a full filesystem (a 1 MiB tmpfs, or a file-size limit
where mounting is not allowed), a read-only folder (as root, which chmod does not stop, the
writer runs without CAP_DAC_OVERRIDE), and generator inits of the wrong shapes. Every writer
runs as a real process through `entry_point`: a user error is one `error: …` line, exit 2.
See the reliability table in the README."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ugan.core.checkpoint_io import load_checkpoint, save_checkpoint
from ugan.core.errors import InputError
from ugan.data.prepared import HELDOUT, TRAIN, PreparedData, save_prepared
from ugan.nets.arch import ArchConfig
from ugan.nets.dcgan import Generator
from ugan.nets.generator_file import generator_payload
from ugan.training.gan_run import check_init

ROOT = Path(__file__).resolve().parents[1]
ARCH = ArchConfig(image_size=28, channels=1, latent_dim=8, base_channels=4)

# Writes one checkpoint of NUMEL float32 zeros at PATH, as a stage would (entry_point).
SAVE = (
    "import torch\n"
    "from ugan.core.checkpoint_io import save_checkpoint\n"
    "from ugan.core.runtime import entry_point\n"
    "def main(path, numel):\n"
    "    save_checkpoint(path, {'step': 2, 'w': torch.zeros(int(numel))})\n"
    "entry_point(main)()\n"
)
# Runs the rest of argv with a file-size limit of argv[1] bytes: a write past it fails with
# EFBIG (SIGXFSZ ignored, as Python does anyway), exactly where a full disk fails with ENOSPC.
FILE_SIZE_LIMIT = (
    "import os, resource, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
# Runs the rest of argv without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (dropped from the
# bounding set, so the exec'd process never has them): root then obeys a folder's mode bits.
NO_DAC_OVERRIDE = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "for cap in (1, 2):\n"
    "    if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP\n"
    "        sys.exit(97)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def _run(argv: list[str], cwd: Path, *, limit: int | None = None, read_only_works=False):
    prefix = [sys.executable]
    if limit is not None:
        prefix += ["-c", FILE_SIZE_LIMIT, str(limit), sys.executable]
    if read_only_works and os.geteuid() == 0:
        prefix += ["-c", NO_DAC_OVERRIDE, sys.executable]
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return subprocess.run(
        [*prefix, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- a real full filesystem ----------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """Mount 1 MiB tmpfs filesystems on folders (root only); unmounted at the end."""
    mounted: list[Path] = []

    def mount(folder: Path) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root (the file-size-limit variant runs anyway)")
        folder.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int = 0) -> Path:
    """Fill `folder`'s filesystem with one file until it is full, then leave `leave` bytes."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        handle.truncate(max(0, handle.tell() - leave))
    return filler


@pytest.mark.parametrize("full", ["tmpfs", "file-size limit"])
def test_a_full_disk_keeps_the_previous_checkpoint_and_exits_2(tmp_path, tmpfs, full):
    disk = tmpfs(tmp_path / "disk") if full == "tmpfs" else tmp_path / "disk"
    disk.mkdir(exist_ok=True)
    path = disk / "c.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(1000)})
    before = path.read_bytes()
    # 2 MiB: more than the tmpfs holds, so the write gets part-way and the disk fills up.
    limit = 256 * 1024 if full == "file-size limit" else None
    result = _run(["-c", SAVE, str(path), str(1 << 19)], tmp_path, limit=limit)
    assert result.returncode == 2, result.stderr[-3000:]
    what = "no space left on device" if full == "tmpfs" else r"file too large \(a file-size limit"
    action = "free space" if full == "tmpfs" else "raise the limit"
    assert re.search(
        rf"^error: {re.escape(str(path))}: {what}.*\[Errno \d+\] .*\); nothing was overwritten, "
        rf"{action} and rerun$",
        result.stderr,
        re.M,
    ), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before and load_checkpoint(path)["step"] == 1
    assert _entries(disk) == ["c.pt"], "the temporary file is removed"
    if full == "tmpfs":
        assert os.statvfs(disk).f_bfree * os.statvfs(disk).f_frsize > 900 * 1024, "space freed"


# -- a tiny project, its stages run for real ----------------------------------------------


def _project(root: Path) -> Path:
    params = {
        "model": {"latent_dim": ARCH.latent_dim, "base_channels": ARCH.base_channels},
        "gan": {
            "steps": 6,
            "checkpoint_every": 3,
            "log_every": 3,
            "batch_size": 16,
            "num_sample_images": 16,
        },
        "tracking": {"log_models": False},
        "device": "cpu",
        "runs": {"dcgan": {"init": "random"}, "dcgan-unbalanced": {"init": "vae"}},
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(64, 1, 28, 28), dtype=np.uint8)
    split = np.where(np.arange(64) < 48, TRAIN, HELDOUT).astype(np.uint8)
    data = PreparedData(images, np.arange(64) % 10, split, {"num_classes": 10})
    save_prepared(root / "data/prepared/dataset.npz", data)
    recipe = {"arch": ARCH.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}
    save_checkpoint(root / "models/init/random.pt", {**recipe, "init_std": 0.02})
    save_checkpoint(root / "models/init/vae.pt", generator_payload(Generator(ARCH), source="vae"))
    return root


def _train(project: Path, key: str = "dcgan", **kw) -> subprocess.CompletedProcess:
    return _run([str(ROOT / "stages/train_gan.py"), key], project, **kw)


def _user_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return re.findall(r"^error: (.*)$", result.stderr, re.M)[-1]


@pytest.mark.parametrize("full", ["checkpoints", "resume state"])
def test_train_gan_on_a_full_disk_exits_2_naming_the_file_and_reruns_once_freed(
    tmp_path, tmpfs, full
):
    project = _project(tmp_path / "project")
    if full == "checkpoints":
        disk, leave, victim = project / "runs/dcgan/checkpoints", 0, "generator_step_000003.pt"
    else:  # room for the lock file, not for a state
        disk, leave, victim = project / ".ugan/resume/train_gan/dcgan", 8192, "state_00000003.pt"
    filler = _fill(tmpfs(disk), leave)
    message = _user_error(_train(project))
    assert re.fullmatch(
        rf"{re.escape(str(Path(disk.relative_to(project), victim)))}: no space left on device "
        r"\(\[Errno 28\] No space left on device, [\d.]+ MiB free there\); nothing was "
        r"overwritten, free space and rerun",
        message,
    ), message
    assert not [p for p in disk.iterdir() if p.name.endswith(".tmp")], "no temporary file left"
    filler.unlink()  # the user frees space and reruns
    result = _train(project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _entries(project / "runs/dcgan/checkpoints") == [
        "generator_step_000003.pt",
        "generator_step_000006.pt",
    ]


# -- a read-only folder ---------------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path):
    """chmod 0555 a folder; skip only where no writer of ours can be made to obey it."""
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    result = _run(["-c", f"open({str(probe / 'x')!r}, 'w')"], tmp_path, read_only_works=True)
    probe.chmod(0o755)
    if result.returncode == 97:
        pytest.skip("root without CAP_SETPCAP: cannot drop CAP_DAC_OVERRIDE, chmod binds nothing")
    if "PermissionError" not in result.stderr:
        pytest.skip(f"a 0555 folder is writable here ({result.returncode}): nothing to test")
    made: list[Path] = []

    def chmod(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        made.append(folder)
        return folder

    yield chmod
    for folder in made:
        folder.chmod(0o755)


def test_saving_into_a_read_only_folder_names_it_and_keeps_the_previous_file(tmp_path, read_only):
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder / "c.pt", {"step": 1})
    read_only(folder)
    result = _run(["-c", SAVE, str(folder / "c.pt"), "10"], tmp_path, read_only_works=True)
    assert _user_error(result) == (
        f"{folder}: cannot write there ([Errno 13] Permission denied); nothing was written: "
        "make it writable (`chmod u+w`, or remount it read-write) and rerun"
    )
    assert _entries(folder) == ["c.pt"] and load_checkpoint(folder / "c.pt")["step"] == 1


@pytest.mark.parametrize("folder", ["runs/dcgan/checkpoints", ".ugan/resume/train_gan/dcgan"])
def test_a_read_only_output_folder_stops_train_gan_before_any_work(tmp_path, read_only, folder):
    project = _project(tmp_path / "project")
    read_only(project / folder)
    message = _user_error(_train(project, read_only_works=True))
    assert message.startswith(f"{folder}: cannot write there ([Errno 13] "), message
    for written in ("runs/dcgan/checkpoints", "runs/dcgan/samples", ".ugan/resume"):
        assert not [p for p in (project / written).rglob("*") if p.is_file()], written


# -- generator inits of the wrong shapes ----------------------------------------------------


def test_an_init_of_another_architecture_stops_train_gan_naming_the_file_and_the_stage(tmp_path):
    project = _project(tmp_path / "project")
    wider = dataclasses.replace(ARCH, base_channels=8)
    save_checkpoint(project / "models/init/vae.pt", generator_payload(Generator(wider)))
    message = _user_error(_train(project, "dcgan-unbalanced"))
    assert message == (
        "models/init/vae.pt was made for another architecture (base_channels: file 8 vs "
        "params 4): rerun `dvc repro transfer` to rebuild it from the current params, or "
        "restore the `model:` params it was made with"
    )
    assert not (project / "runs/dcgan-unbalanced/checkpoints").exists()


def test_init_weights_that_do_not_fit_their_arch_are_named_with_their_shapes():
    wider = dataclasses.replace(ARCH, base_channels=8)
    assembled = {**generator_payload(Generator(wider)), "arch": ARCH.to_dict()}
    with pytest.raises(
        InputError,
        match=r"^models/init/vae\.pt: its weights do not fit the generator its `arch` describes "
        r"\('project\.0\.weight': file \(784, 8\) vs net \(392, 8\);.* more\).*rerun "
        r"`dvc repro transfer`",
    ):
        check_init(Path("models/init/vae.pt"), assembled, ARCH, "vae")
    with pytest.raises(
        InputError,
        match=r"^models/init/random\.pt: not a generator init: no `arch` in it.*"
        r"`dvc repro init_random`",
    ):
        check_init(Path("models/init/random.pt"), {"init_std": 0.02}, ARCH, "random")
    check_init(Path("models/init/vae.pt"), generator_payload(Generator(ARCH)), ARCH, "vae")
