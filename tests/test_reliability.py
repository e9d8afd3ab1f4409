"""Faults injected for real: SIGKILL, SIGTERM, truncated and unsafe files, NaN losses, an
unreachable tracking store, a held lock. See the reliability table in the README."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from ugan.config.load import parse_params
from ugan.core.errors import NonFiniteLossError, ResumeMismatchError, RunLockedError
from ugan.core.paths import RunLayout
from ugan.methods.gan import GANMethod
from ugan.nets.dcgan import Generator, init_weights
from ugan.nets.generator_file import generator_payload, load_generator
from ugan.tracking.spool import pending
from ugan.tracking.stage_run import StageRun
from ugan.training.gan import train_gan
from ugan.training.resume import ResumeStore

TRAINER = Path(__file__).parent / "faults" / "tiny_trainer.py"


def _start(workdir: Path, steps: int, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(TRAINER), str(workdir), str(steps)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_state(workdir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((workdir / "resume").glob("train_gan/dcgan/state_*.pt")):
            return
        assert proc.poll() is None, f"trainer ended early: {proc.communicate()[1][-2000:]}"
        time.sleep(0.02)
    raise AssertionError("no resume state appeared")


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
    proc = _start(killed, steps, env)
    _wait_for_state(killed, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert not RunLayout(killed / "out").checkpoint_path(steps).exists(), "killed too late"
    rerun = _start(killed, steps, env)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert "resuming dcgan from step" in err
    a, b = _final_weights(reference, steps), _final_weights(killed, steps)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from uninterrupted one"
    assert (killed / "out/losses.csv").read_text() == (reference / "out/losses.csv").read_text()


def test_sigterm_saves_state_marks_run_killed_and_exits_nonzero(tmp_path, env):
    proc = _start(tmp_path, 100_000, env)
    _wait_for_state(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "state saved for resume" in err
    assert list((tmp_path / "resume/train_gan/dcgan").glob("state_*.pt"))
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = _stage_runs(client)
    assert [r.info.status for r in runs] == ["KILLED"]


def _tiny_run(tmp_path, tiny_arch, tiny_data, overrides=None, key="dcgan", **kw):
    gan = {"steps": 20, "checkpoint_every": 5, "batch_size": 16, **(overrides or {})}
    run = parse_params({"gan": gan}).run(key)
    torch.manual_seed(0)
    g = Generator(tiny_arch)
    init_weights(g)
    with StageRun("train_gan", {}, run_key=key, log_models=False) as tracker:
        return train_gan(
            key,
            run,
            tiny_arch,
            tiny_data,
            generator_payload(g),
            tmp_path / "out",
            tracker,
            resume_root=tmp_path / "resume",
            **kw,
        )


def _nan_at(monkeypatch, steps: set[int]):
    """Force the loss to NaN on the given calls of the real training step."""
    real_step = GANMethod.train_step
    calls = {"n": 0}

    def step(self, next_batch):
        calls["n"] += 1
        losses = real_step(self, next_batch)
        return {**losses, "d_loss": float("nan")} if calls["n"] in steps else losses

    monkeypatch.setattr(GANMethod, "train_step", step)
    return calls


def test_nonfinite_loss_stops_naming_step_and_checkpoints_nothing_after(
    tmp_path, tiny_arch, tiny_data, monkeypatch
):
    _nan_at(monkeypatch, {7})
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 7: \{'d_loss': nan\}"):
        _tiny_run(tmp_path, tiny_arch, tiny_data)
    assert RunLayout(tmp_path / "out").checkpoint_steps() == [5]


def test_nonfinite_loss_rolls_back_and_retries(tmp_path, tiny_arch, tiny_data, monkeypatch):
    calls = _nan_at(monkeypatch, {7})
    with pytest.warns(UserWarning, match="rolled back to step 5"):
        summary = _tiny_run(tmp_path, tiny_arch, tiny_data, {"nonfinite_retries": 1})
    assert summary["checkpoints"] == [5, 10, 15, 20]
    assert calls["n"] == 22  # 6 good + 1 NaN, replayed from step 5: 15 more


def test_resume_with_changed_loss_is_refused_with_the_differences(
    tmp_path, tiny_arch, tiny_data, monkeypatch
):
    _nan_at(monkeypatch, {12})  # leaves a resume state at step 10
    with pytest.raises(NonFiniteLossError):
        _tiny_run(tmp_path, tiny_arch, tiny_data)
    monkeypatch.undo()
    with pytest.raises(
        ResumeMismatchError, match=r"loss: saved 'ns' → now 'lsgan'[\s\S]*UGAN_FRESH_START=1"
    ):
        _tiny_run(tmp_path, tiny_arch, tiny_data, {"loss": "lsgan"})
    monkeypatch.setenv("UGAN_FRESH_START", "1")
    assert _tiny_run(tmp_path, tiny_arch, tiny_data, {"loss": "lsgan"})["checkpoints"] == [
        5,
        10,
        15,
        20,
    ]


def test_truncated_newest_state_falls_back_to_previous_with_warning(
    tmp_path, tiny_arch, tiny_data, monkeypatch
):
    _nan_at(monkeypatch, {17})  # states at 10 and 15 remain
    with pytest.raises(NonFiniteLossError):
        _tiny_run(tmp_path, tiny_arch, tiny_data)
    monkeypatch.undo()
    newest = tmp_path / "resume/train_gan/dcgan/state_00000015.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(
        UserWarning, match=r"skipping unusable resume state: checkpoint .*state_00000015\.pt"
    ):
        summary = _tiny_run(tmp_path, tiny_arch, tiny_data)
    assert summary["checkpoints"] == [5, 10, 15, 20]


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
            _tiny_run(tmp_path, tiny_arch, tiny_data)
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
        summary = _tiny_run(tmp_path, tiny_arch, tiny_data)
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
