"""`ugan run`'s cells side by side (ugan.pipeline.side_by_side), on a real DVC project whose
stages are shell commands: shared stage → train_gan@<run> → evaluate@<run> → report. Fast: the
tiny GAN pipeline runs them in tests/test_first_look.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from ugan.core.errors import UserError
from ugan.pipeline import side_by_side

BIN = Path(sys.executable).parent
# Each cell stage records when it ran; the one of run `bad` fails.
STAGE = "t0=$(date +%s.%N); sleep 1.5 && test {item} != bad && echo $t0 $(date +%s.%N) > {out}"


def _project(path: Path, runs: list[str], stage: str = STAGE) -> dict:
    stages = {
        "shared": {"cmd": "echo data > shared.txt", "outs": ["shared.txt"]},
        "train_gan": {
            "foreach": runs,
            "do": {
                "cmd": stage.format(item="${item}", out="train-${item}.txt"),
                "deps": ["shared.txt"],
                "outs": ["train-${item}.txt"],
            },
        },
        "evaluate": {
            "foreach": runs,
            "do": {
                "cmd": stage.format(item="${item}", out="eval-${item}.txt"),
                "deps": ["train-${item}.txt"],
                "outs": ["eval-${item}.txt"],
            },
        },
        "report": {
            "cmd": "cat eval-*.txt > report.txt",
            "deps": [f"eval-{run}.txt" for run in runs],
            "outs": ["report.txt"],
        },
    }
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env |= {k: "t" for k in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME")}
    env |= {k: "t@t" for k in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL")}
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        subprocess.run(cmd, cwd=path, env=env, check=True)
    return env


def _span(path: Path, name: str) -> tuple[float, float]:
    start, end = (path / name).read_text().split()
    return float(start), float(end)


def test_cells_run_at_once_after_the_shared_stages_and_before_what_joins_them(
    tmp_path, monkeypatch, capfd
):
    env = _project(tmp_path, ["a", "b"])
    monkeypatch.chdir(tmp_path)
    assert side_by_side.reproduce(["a", "b"], 2, env) == 0
    out = capfd.readouterr().out
    a, b = _span(tmp_path, "train-a.txt"), _span(tmp_path, "train-b.txt")
    assert a[0] < b[1] and b[0] < a[1], (a, b)  # the two trainings overlapped
    for run in ("a", "b"):
        assert f"[{run}] Running stage 'train_gan@{run}'" in out
        assert f"[{run}] done in" in out
    assert (tmp_path / "report.txt").read_text().count("\n") == 2
    status = subprocess.run(
        ["dvc", "status"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert "up to date" in status.stdout, status.stdout  # every stage recorded in dvc.lock


def test_a_failed_cell_starts_no_more_cells_lets_the_running_one_finish_and_skips_the_rest(
    tmp_path, monkeypatch, capfd
):
    env = _project(tmp_path, ["bad", "ok", "later"])
    monkeypatch.chdir(tmp_path)
    assert side_by_side.reproduce(["bad", "ok", "later"], 2, env) != 0
    out = capfd.readouterr().out
    assert "[bad] FAILED (exit" in out
    assert "not started after that failure: later" in out
    assert (tmp_path / "eval-ok.txt").exists()  # the running cell finished, and is recorded
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]
    assert "evaluate@ok" in lock and "train_gan@later" not in lock and "report" not in lock


@pytest.mark.parametrize(
    ("device", "runs", "cores", "jobs"),
    [("cpu", 2, 2, 2), ("cpu", 5, 2, 2), ("cpu", 1, 2, 1), ("cpu", 2, 1, 1), ("cuda", 2, 16, 1)],
)
def test_default_jobs_one_per_run_and_core_on_a_cpu(monkeypatch, device, runs, cores, jobs):
    monkeypatch.setattr(side_by_side, "available_cores", lambda: cores)
    assert side_by_side.default_jobs(device, runs) == jobs


def test_outside_a_dvc_project_it_says_so_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="not inside of a DVC repository"):
        side_by_side.reproduce(["a", "b"], 2, dict(os.environ))


def test_sigterm_stops_every_running_cell_and_records_none_of_them(tmp_path):
    """`ugan run` interrupted while its cells train: each cell's whole process group (DVC and
    the stage under it) is stopped, and nothing half-done is recorded."""
    long_stage = "echo $$ > pid-{item}; sleep 60 && echo done > {out}"
    env = _project(tmp_path, ["a", "b"], long_stage)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    script = (
        "import os, sys; from ugan.pipeline import processes, side_by_side; "
        "processes.stop_on_sigterm(); "
        "sys.exit(side_by_side.reproduce(['a', 'b'], 2, dict(os.environ)))"
    )
    ugan = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env)
    pids = [tmp_path / "pid-a", tmp_path / "pid-b"]
    deadline = time.monotonic() + 120
    while not all(p.exists() and p.read_text().strip() for p in pids):
        assert time.monotonic() < deadline and ugan.poll() is None, "the cells never started"
        time.sleep(0.2)
    ugan.send_signal(signal.SIGTERM)
    assert ugan.wait(timeout=120) != 0
    for pid in (int(p.read_text()) for p in pids):  # the stage's shell is gone (or a zombie
        with contextlib.suppress(psutil.NoSuchProcess):  # left for this sandbox's init to reap)
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]
    assert "shared" in lock and not any(name.startswith("train_gan") for name in lock)
    assert not (tmp_path / "train-a.txt").exists() and not (tmp_path / "train-b.txt").exists()
