"""`ugan` commands stopped the way CI or a user stops them (real SIGTERM, real busy port, real
`dvc` and MLflow server processes): they leave the user's params.yaml as it was, with its
comments, and leave no child process running."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from ugan.config.profiles import apply_profile, load_profile, render_params

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "grid:\n  gans: {dcgan: {loss: ns}}\n  inits: [random, vae]\n  seeds: [0, 1]\n"


def _ugan(*args: str) -> list[str]:
    return [sys.executable, "-m", "ugan.pipeline.cli", *args]


def _env(path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    return env | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _assert_all_gone(processes: list[psutil.Process], timeout: float = 30) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"left running: {[' '.join(p.cmdline()[:4]) for p in alive]}"


def test_render_params_keeps_every_comment_and_holds_the_profile():
    original = (ROOT / "params.yaml").read_text()
    profile = load_profile("paper-mnist", ROOT / "profiles")
    merged, _ = apply_profile(yaml.safe_load(original), profile)
    text = render_params(original, merged)
    assert yaml.safe_load(text) == merged
    comments = [line.split("#", 1)[1] for line in original.splitlines() if "#" in line]
    assert comments and all(comment in text for comment in comments)


@pytest.fixture
def repo(tmp_path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    (path / "profiles").mkdir()
    (path / "profiles/tiny.yaml").write_text(PROFILE)
    env = _env(path)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(cmd, cwd=path, env=env, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "p"], cwd=path, env=env, check=True)
    return path


@pytest.mark.parametrize("mode", ["--queue-only", "--here"])
def test_sigterm_to_ugan_grid_restores_params_and_stops_dvc(repo, mode):
    params = repo / "params.yaml"
    original = params.read_bytes()
    proc = subprocess.Popen(
        _ugan("grid", "tiny", mode),
        cwd=repo,
        env=_env(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    # Rendezvous: the grid is in params.yaml, so `dvc exp run` is (about to be) running.
    while params.read_bytes() == original:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.01)
    children = _descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)  # to ugan alone, as a supervisor would
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130 and "interrupted" in output, output[-2000:]
    assert params.read_bytes() == original, "an interrupted grid left params.yaml changed"
    _assert_all_gone(children)


def test_ugan_ui_on_a_busy_port_fails_with_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            _ugan("ui", "--port", str(port)),
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: port {port} on 127.0.0.1 is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_to_ugan_ui_stops_the_mlflow_server_and_its_workers(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        _ugan("ui", "--port", str(port)),
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    children = _descendants(proc.pid)
    assert children, "the MLflow server runs as a child of `ugan ui`"
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output[-2000:]
    _assert_all_gone(children)
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


@pytest.mark.parametrize("command", ["serve", "trigger"])
@pytest.mark.parametrize("server", ["unset", "dead"])
def test_serve_and_trigger_without_a_prefect_server_say_how_to_start_one(tmp_path, command, server):
    env = {k: v for k, v in _env(tmp_path).items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")  # no profile of this machine leaks in
    if server == "dead":
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{_free_port()}/api"  # nothing listens
    result = subprocess.run(
        _ugan(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    expected = {"unset": "PREFECT_API_URL is not set", "dead": "no Prefect server answers at"}
    assert f"error: {expected[server]}" in result.stderr
    assert "prefect server start --host 127.0.0.1" in result.stderr
