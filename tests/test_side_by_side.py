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
from shell_project import shell_project

from ugan.core.errors import UserError
from ugan.pipeline import side_by_side


def _span(path: Path, name: str) -> tuple[float, float]:
    start, end = (path / name).read_text().split()
    return float(start), float(end)


def test_cells_run_at_once_after_the_shared_stages_and_before_what_joins_them(
    tmp_path, monkeypatch, capfd
):
    env = shell_project(tmp_path, ["a", "b"])
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
    env = shell_project(tmp_path, ["bad", "ok", "later"])
    monkeypatch.chdir(tmp_path)
    assert side_by_side.reproduce(["bad", "ok", "later"], 2, env) != 0
    out = capfd.readouterr().out
    assert "[bad] FAILED (exit" in out
    assert "not started after that failure: later" in out
    assert (tmp_path / "eval-ok.txt").exists()  # the running cell finished, and is recorded
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]
    assert "evaluate@ok" in lock and "train_gan@later" not in lock and "report" not in lock


def test_the_cells_see_how_many_run_now_and_the_file_goes_with_the_scheduler(tmp_path, monkeypatch):
    """Three runs, two at a time: a cell reads the live count (`UGAN_JOBS_FILE`) at its start
    and end. The first two start together (2); the third, long, starts when the short one ends
    (still 2: the count is written after the replacement starts) and ends alone (1)."""
    record = "echo $(cat $UGAN_JOBS_FILE) >> {out}"
    stage = (
        f"{record}; case {{item}} in a) sleep 1;; b) sleep 4;; c) sleep 9;; esac; {record}; "
        "echo $UGAN_JOBS_FILE > file-{item}"
    )
    env = shell_project(tmp_path, ["a", "b", "c"], stage)
    monkeypatch.chdir(tmp_path)
    assert side_by_side.reproduce(["a", "b", "c"], 2, env) == 0
    counts = {run: (tmp_path / f"train-{run}.txt").read_text().split() for run in ("a", "b", "c")}
    assert counts["a"][0] == counts["b"][0] == "2", counts
    assert counts["c"] == ["2", "1"], counts
    assert not Path((tmp_path / "file-c").read_text().strip()).exists()  # removed at the end


def test_without_live_counts_the_cells_get_no_jobs_file(tmp_path, monkeypatch):
    env = shell_project(tmp_path, ["a", "b"], "(printenv UGAN_JOBS_FILE || echo none) > {out}")
    monkeypatch.chdir(tmp_path)
    subprocess.run(["dvc", "repro", "shared"], env=env, check=True, capture_output=True)
    assert side_by_side.run_cells(["a", "b"], 2, env, live=False) == 0
    assert (tmp_path / "train-a.txt").read_text().strip() == "none"


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
    env = shell_project(tmp_path, ["a", "b"], long_stage)
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
