"""Faults injected for real: SIGKILL, SIGTERM, truncated and unsafe files, NaN losses, an
unreachable tracking store, a held lock. See the reliability table in the README."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
from method_helpers import train_tiny_gan

from ugan.core.checkpoint_io import load_checkpoint
from ugan.core.errors import RunLockedError
from ugan.core.paths import RunLayout
from ugan.nets.generator_file import load_generator
from ugan.tracking.spool import pending
from ugan.training.resume import ResumeStore

TRAINER = Path(__file__).parent / "faults" / "tiny_trainer.py"
STATES = "resume/train_gan/dcgan/state_*.pt"


def _start(workdir: Path, steps: int, env, every: int = 10, pause_at: int = 0) -> subprocess.Popen:
    """The tiny trainer; with `pause_at` it waits at the start of that step (see `_paused`)."""
    argv = [str(workdir), str(steps), str(every), *([str(pause_at)] if pause_at else [])]
    return subprocess.Popen(
        [sys.executable, str(TRAINER), *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _paused(workdir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """The rendezvous: return once the trainer waits at its `pause_at` step (it goes on when
    WORKDIR/go appears), so a signal lands at a known step whatever the machine's speed."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (workdir / "paused").exists():
            return
        assert proc.poll() is None, f"trainer ended early: {proc.communicate()[1][-2000:]}"
        time.sleep(0.01)
    raise AssertionError("the trainer never reached its pause step")


def _stage_runs(client) -> list:
    """The stage runs of the experiment, without the pipeline parent runs."""
    runs = client.search_runs([client.get_experiment_by_name("ugan").experiment_id])
    return [r for r in runs if r.data.tags.get("ugan.stage") != "pipeline"]


def _final_weights(workdir: Path, step: int) -> dict:
    return load_generator(RunLayout(workdir / "out").checkpoint_path(step)).state_dict()


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path, env):
    steps = 60
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _start(reference, steps, env).wait(timeout=300) == 0
    proc = _start(killed, steps, env, pause_at=13)  # states at step 10; step 13 in flight
    _paused(killed, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert [p.name for p in killed.glob(STATES)] == ["state_00000010.pt"]
    assert RunLayout(killed / "out").checkpoint_steps() == [10]
    rerun = _start(killed, steps, env)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert "resuming dcgan from step 10" in err
    a, b = _final_weights(reference, steps), _final_weights(killed, steps)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from uninterrupted one"
    assert (killed / "out/losses.csv").read_text() == (reference / "out/losses.csv").read_text()


def test_sigterm_saves_state_marks_run_killed_and_exits_nonzero(tmp_path, env):
    # No periodic state (checkpoint_every 1000): the only state can be the one the stop saves.
    proc = _start(tmp_path, 100_000, env, every=1000, pause_at=7)
    _paused(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)  # lands while step 7 waits to start
    (tmp_path / "go").touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    stopped = re.search(r"stopped at step (\d+); state saved for resume", err)
    assert stopped, err[-2000:]
    step = int(stopped[1])
    assert step == 7, "the step in flight finishes, no other starts"
    assert [p.name for p in tmp_path.glob(STATES)] == [f"state_{step:08d}.pt"]
    assert load_checkpoint(next(tmp_path.glob(STATES)))["step"] == step
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = _stage_runs(client)
    assert [r.info.status for r in runs] == ["KILLED"]

    rerun = _start(tmp_path, step + 3, env, every=5)  # steps and cadence may change on resume
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert f"resuming dcgan from step {step}" in err
    rows = (tmp_path / "out/losses.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, step + 4))
    assert RunLayout(tmp_path / "out").checkpoint_steps() == [step + 3]


def test_second_trainer_on_the_same_folder_is_refused(tmp_path, tiny_arch, tiny_data):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path\n"
                "from ugan.training.resume import ResumeStore\n"
                f"with ResumeStore('train_gan/dcgan', {{}}, Path({str(tmp_path / 'resume')!r})):\n"
                "    print('locked', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match="another trainer is using"):
            train_tiny_gan(tmp_path, tiny_arch, tiny_data)
    finally:
        holder.kill()
        holder.wait()
    with ResumeStore("train_gan/dcgan", {}, tmp_path / "resume"):
        pass  # the lock died with its holder


def test_unreachable_tracking_store_training_goes_on_and_syncs_later(
    tmp_path, tiny_arch, tiny_data, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the spool lives under ./.ugan/spool
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    with pytest.warns(UserWarning, match="unreachable"):
        summary = train_tiny_gan(tmp_path, tiny_arch, tiny_data)
    assert summary["checkpoints"] == [5, 10, 15, 20]
    spools = pending()
    assert len(spools) == 1 and "d_loss" in (spools[0] / "events.jsonl").read_text()

    store = f"sqlite:///{tmp_path / 'back.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "ugan.pipeline.cli", "sync"],
        env=dict(os.environ, MLFLOW_TRACKING_URI=store),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert pending() == []
    client = mlflow.MlflowClient(store)
    (run,) = _stage_runs(client)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "d_loss")][-1] == 20
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"samples", "losses.csv"}


def test_concurrent_stage_processes_share_the_sqlite_store(tmp_path, env):
    code = (
        "from ugan.tracking.stage_run import StageRun\n"
        "with StageRun('s', {'a': 1}) as r:\n"
        "    for i in range(300): r.log_metrics({'m': i}, step=i); r.flush()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        assert "unreachable" not in err
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = _stage_runs(client)
    assert len(runs) == 3
    assert all(len(client.get_metric_history(r.info.run_id, "m")) == 300 for r in runs)
