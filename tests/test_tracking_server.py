"""A real MLflow tracking server stopped in the middle of a stage and started again on the same
store: what the stage logged while it was down lands in that same server, exactly once, either
at the end of the stage (server back by then) or by `ugan sync` (server back later)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

pytestmark = pytest.mark.slow

STAGE = """
import pathlib, time
from ugan.tracking.stage_run import StageRun

here = pathlib.Path(".")

def rendezvous(mark, wait_for):
    (here / mark).touch()
    while not (here / wait_for).exists():
        time.sleep(0.05)

with StageRun("train_gan", {"gan": {"steps": 20}}, run_key="x") as run:
    for step in range(1, 11):
        run.log_metrics({"d_loss": 1.0 / step}, step=step)
    run.flush()
    rendezvous("logged_10", "server_stopped")
    for step in range(11, 21):
        run.log_metrics({"d_loss": 1.0 / step}, step=step)
    run.flush()  # the server is down: the run goes on into the spool
    rendezvous("logged_20", "may_end")
print("offline" if run.offline else "online")
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`mlflow server` on a sqlite store and an artifact folder that outlive it."""

    def __init__(self, root: Path):
        self.root, self.port = root, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"),
            *("--port", str(self.port), "--workers", "1"),
            *("--backend-store-uri", f"sqlite:///{self.root / 'server.db'}"),
            *("--artifacts-destination", str(self.root / "artifacts")),
        ]
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + 120
        while True:
            assert self.proc.poll() is None and time.time() < deadline, "mlflow server died"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)
        deadline = time.time() + 30
        while time.time() < deadline:  # the port is free once the workers are gone too
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)
        raise AssertionError("the mlflow server still listens after SIGTERM")


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path)
    server.start()
    yield server
    if server.proc.poll() is None:
        server.stop()


def _wait(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 180
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)


def _run_stage(cwd: Path, server: Server, back_before_the_end: bool) -> str:
    env = dict(os.environ, MLFLOW_TRACKING_URI=server.uri)
    env.pop("UGAN_PIPELINE_ID", None)
    stage = subprocess.Popen(
        [sys.executable, "-c", STAGE],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait(cwd / "logged_10", stage)
    server.stop()
    (cwd / "server_stopped").touch()
    _wait(cwd / "logged_20", stage)
    if back_before_the_end:
        server.start()
    (cwd / "may_end").touch()
    output = stage.communicate(timeout=300)[0]
    assert stage.returncode == 0, output[-3000:]
    assert "offline" in output and "unreachable" in output, output[-3000:]
    return output


def _the_one_run(server: Server):
    client = mlflow.MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("ugan").experiment_id
    runs = client.search_runs([experiment], "tags.`ugan.stage` = 'train_gan'")
    assert len(runs) == 1, [r.info.run_name for r in runs]  # not one per replay
    history = client.get_metric_history(runs[0].info.run_id, "d_loss")
    assert sorted(m.step for m in history) == list(range(1, 21))  # each step exactly once
    assert runs[0].info.status == "FINISHED"
    return runs[0]


def _sync(cwd: Path, server: Server) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ugan.pipeline.cli", "sync"],
        cwd=cwd,
        env=dict(os.environ, MLFLOW_TRACKING_URI=server.uri),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_server_back_before_the_stage_ends_gets_the_spool_at_the_end(tmp_path, server):
    _run_stage(tmp_path, server, back_before_the_end=True)
    _the_one_run(server)
    assert not list((tmp_path / ".ugan/spool").glob("*")), "the end-of-stage flush sent it all"
    again = _sync(tmp_path, server)
    assert again.returncode == 0 and "0 of 0 spooled run(s)" in again.stdout, again.stderr
    _the_one_run(server)


def test_a_server_back_after_the_stage_gets_the_spool_from_ugan_sync(tmp_path, server):
    output = _run_stage(tmp_path, server, back_before_the_end=False)
    assert "run `ugan sync` when the store is back" in output
    assert len(list((tmp_path / ".ugan/spool").glob("*"))) == 1
    server.start()
    first = _sync(tmp_path, server)
    assert first.returncode == 0 and "1 of 1 spooled run(s)" in first.stdout, first.stderr
    run = _the_one_run(server)
    second = _sync(tmp_path, server)
    assert second.returncode == 0 and "0 of 0 spooled run(s)" in second.stdout
    assert _the_one_run(server).info.run_id == run.info.run_id
