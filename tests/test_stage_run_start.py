"""A stage's MLflow run is connected in the background: the stage does not wait for MLflow's
import and its store to begin its work, and nothing logged meanwhile is lost (real sqlite store)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import mlflow
import pytest

from ugan.tracking.stage_run import StageRun


def test_a_stage_loads_without_importing_mlflow():
    code = (
        "import runpy, sys; runpy.run_path('stages/train_gan.py', run_name='probe'); "
        "import ugan.tracking.stage_run, ugan.tracking.spool, ugan.tracking.pipeline_run; "
        "print(sorted(m for m in sys.modules if m == 'mlflow' or m.startswith('mlflow.')))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_work_goes_on_while_the_store_connects_and_nothing_logged_meanwhile_is_lost(monkeypatch):
    release, connecting = threading.Event(), threading.Event()
    real_start = StageRun._start_live

    def held_start(self, uri, tags, params):  # the store answers only once the test says so
        connecting.set()
        assert release.wait(60)
        real_start(self, uri, tags, params)

    monkeypatch.setattr(StageRun, "_start_live", held_start)
    with StageRun("train_gan", {"gan": {"steps": 3}}, run_key="held") as run:
        assert connecting.wait(60)
        run.set_tags({"ugan.init": "random"})  # neither call waits for the store
        for step in (1, 2, 3):
            run.log_metrics({"d_loss": 1.0 / step}, step=step)
        assert run._connecting.is_alive()  # still connecting: the stage was not held up
        release.set()
        run_id = run.run_id  # the first call that needs the run waits for it
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["ugan.init"] == "random"
    assert logged.data.params == {"gan.steps": "3"}
    assert [m.step for m in client.get_metric_history(run_id, "d_loss")] == [1, 2, 3]


def test_a_failed_connection_turns_the_run_offline_in_the_stages_thread(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    with pytest.warns(UserWarning, match="unreachable"):
        with StageRun("train_gan", {"gan": {"steps": 1}}, run_key="down") as run:
            run.set_tags({"ugan.init": "random"})
            run.log_metrics({"d_loss": 0.5}, step=1)
            assert run.offline
    (spool,) = (tmp_path / ".ugan/spool").iterdir()
    events = (spool / "events.jsonl").read_text()
    assert '"ugan.init": "random"' in events and '"d_loss", 0.5' in events
