"""The nightly deployment the flow tests and the browser test share: a tiny DVC project in a
temporary git repo, served by `ugan serve` to a real Prefect server on 127.0.0.1, its first
(full) run triggered by `ugan trigger`. Started on first use (`nightly()`), stopped after its
last user."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import mlflow
import yaml
from pipeline_project import TINY, _merge

from ugan.pipeline.flows import FLOW_NAME
from ugan.tracking.pipeline_run import PARENT_ENV, PIPELINE_ENV

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CRON = "15 4 * * *"
MODEL = "tiny-generator"
# Tinier still than test_pipeline's TINY, for the sections the project's params.yaml has.
SHRINK = {"classifier": {"steps": 30}, "dae": {"steps": 20, "sample_every": 10}}
# Stages that log no MLflow run: init_random only writes a seeded generator init.
UNTRACKED_STAGES = {"init_random"}


# -- helpers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process ended with {proc.returncode}")
        with contextlib.suppress(Exception):
            value = check()
            if value:
                return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a process started in its own session, with its children."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def sh(cmd: list[str], cwd: Path, env: dict, timeout: float = 600) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@dataclass
class Nightly:
    """A tiny DVC project served as the nightly deployment by a real Prefect server."""

    path: Path
    env: dict
    api: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    first: dict = field(default_factory=dict)  # the result of the first (full) run
    users: int = 0

    @property
    def mlflow(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(self.env["MLFLOW_TRACKING_URI"])

    def start(self, cmd: list[str], log: str) -> subprocess.Popen:
        out = open(self.path.parent / log, "w")
        proc = subprocess.Popen(
            cmd, cwd=self.path, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def trigger(self, timeout: float = 300) -> tuple[dict, float]:
        """`ugan trigger`: a run now; its flow result and the wall time to completion."""
        started = time.monotonic()
        cmd = [str(BIN / "ugan"), "trigger", "--timeout", str(timeout)]
        out = sh(cmd, self.path, self.env, timeout + 60)
        seconds = time.monotonic() - started
        assert re.search(r"^flow run \S+ \([0-9a-f-]+\): Completed$", out, re.M), out[-3000:]
        return json.loads(out[out.index("\n{") :]), seconds

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)

    def deployment(self) -> dict:
        response = httpx.get(f"{self.api}/deployments/name/{FLOW_NAME}/nightly", timeout=10)
        response.raise_for_status()
        return response.json()

    def set_params(self, override: dict) -> None:
        params = yaml.safe_load((self.path / "params.yaml").read_text())
        (self.path / "params.yaml").write_text(yaml.safe_dump(_merge(params, override)))


def _tiny_project(path: Path, env: dict) -> None:
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = _merge(_merge(base, TINY), {k: v for k, v in SHRINK.items() if k in base})
    params["modes"] = {}  # the benchmark cells are test_pipeline's; the flow runs the stage empty
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    source = params["data"].get("path")  # the source's files: a DVC dep of prepare
    if source and (ROOT / source).is_dir():
        shutil.copytree(ROOT / source, path / source)
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "tiny project"],
    ):
        sh(cmd, path, env)


def _start_nightly(base: Path) -> Nightly:
    path, port = base / "project", free_port()
    path.mkdir()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(path / "src"),  # the copy's code runs, the copy's code is hashed
        MLFLOW_TRACKING_URI=f"sqlite:///{path / 'mlflow.db'}",
        PREFECT_HOME=str(base / "prefect"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_RUNNER_POLL_FREQUENCY="2",  # the served deployment picks up a run within 2 s
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    for name in (PIPELINE_ENV, PARENT_ENV):
        env.pop(name, None)
    nightly = Nightly(path, env, api)
    try:
        return _serve_and_run(nightly, port)
    except BaseException:
        nightly.stop()
        raise


def _serve_and_run(nightly: Nightly, port: int) -> Nightly:
    path, api, env = nightly.path, nightly.api, nightly.env
    server = nightly.start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        "prefect-server.log",
    )
    _tiny_project(path, env)  # while the server starts
    wait_for(lambda: httpx.get(f"{api}/health", timeout=5).json(), 120, "prefect server", server)
    served = nightly.start(
        [str(BIN / "ugan"), "serve", "--project", str(path), "--cron", CRON,
         "--model-name", MODEL],
        "serve.log",
    )  # fmt: skip
    wait_for(nightly.deployment, 120, "deployment ugan-pipeline/nightly", served)
    nightly.first, _ = nightly.trigger(timeout=900)  # the full pipeline, on 2 busy cores
    return nightly


_NIGHTLY: dict = {}  # "instance", or "error" once starting it failed


@contextlib.contextmanager
def nightly(tmp_path_factory) -> Nightly:
    """The shared served deployment, started on first use, stopped after its last user."""
    if "error" in _NIGHTLY:
        raise RuntimeError("the nightly deployment failed to start") from _NIGHTLY["error"]
    if "instance" not in _NIGHTLY:
        try:
            _NIGHTLY["instance"] = _start_nightly(tmp_path_factory.mktemp("nightly"))
        except BaseException as error:
            _NIGHTLY["error"] = error
            raise
    instance = _NIGHTLY["instance"]
    instance.users += 1
    try:
        yield instance
    finally:
        instance.users -= 1
        if instance.users == 0:
            instance.stop()
            _NIGHTLY.clear()
