"""A cluster on one machine, for tests/test_cluster.py and benchmarks/cluster.py: the services
(PostgreSQL, MLflow server, Prefect server) on loopback, a bare git remote and a DVC remote in a
temporary folder, a tiny project pushed there, and `ugan worker`s each in a folder of its own
(standing in for machines: they share nothing but the services and the two remotes)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "grid-pool"

# Tinier than test_pipeline's TINY: the cluster's cost is its machinery, not the training.
TINY = {
    "classifier": {"steps": 10, "min_accuracy": 0.0},
    "model": {"latent_dim": 16, "base_channels": 8},
    "vae": {"steps": 10, "sample_every": 10},
    "dae": {"steps": 10, "sample_every": 10},
    "gan": {"steps": 10, "checkpoint_every": 5, "batch_size": 32, "num_sample_images": 16},
    "eval": {"num_samples": 100, "kid_subset_size": 50},
    "tracking": {"log_models": True},
    "device": "cpu",
    "modes": {},
}
PROFILE = (
    "description: 2 seeds x 2 inits, 4 cells\n"
    "grid:\n  gans: {dcgan: {loss: ns}}\n  inits: [random, vae]\n  seeds: [0, 1]\n"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sh(cmd: list[str], cwd: Path, env: dict, timeout: float = 600) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and value and isinstance(base.get(key), dict):
            out[key] = merge(base[key], value)
        else:
            out[key] = value
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """`proc` and everything it started, as when its machine is switched off."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


@dataclass
class Cluster:
    base: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    services: object = None
    env: dict = field(default_factory=dict)

    def start_services(self):
        from ugan.pipeline.services import Services

        # As root PostgreSQL runs as `postgres`, which cannot enter pytest's 0700 folders.
        pg_root = Path(tempfile.mkdtemp(prefix="ugan-pg-"))
        pg_root.chmod(0o755)
        self.pg_root = pg_root
        self.services = Services(
            self.base / "services", pg_port=free_port(), mlflow_port=free_port(),
            prefect_port=free_port(), pg_data=pg_root / "data",
        )  # fmt: skip
        started = time.monotonic()
        self.env = self._env(self.services.up())
        return time.monotonic() - started

    def _env(self, urls: dict) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UGAN_", "DVC_"))}
        return env | urls | {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "2",  # a worker asks for work every 2 s
            "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
            "OMP_NUM_THREADS": "1",
        }  # fmt: skip

    def make_project(self) -> Path:
        """The team's project: pushed to a bare git remote, with a DVC remote in .dvc/config."""
        seed, remote = self.base / "seed", self.base / "remote.git"
        seed.mkdir()
        for name in ("src", "stages", "data/sources"):
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, seed / name,
                                ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        for name in ("dvc.yaml", ".gitignore"):
            shutil.copy(ROOT / name, seed / name)
        params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
        (seed / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (seed / "profiles").mkdir()
        (seed / "profiles/tiny.yaml").write_text(PROFILE)
        env = self.env
        sh(["git", "init", "-q", "--bare", str(remote)], self.base, env)
        for cmd in (
            ["git", "init", "-q", "-b", "main"],
            ["dvc", "init", "-q"],
            ["dvc", "config", "core.analytics", "false"],
            ["dvc", "remote", "add", "-d", "shared", str(self.base / "dvc-remote")],
            ["git", "add", "-A"],
            ["git", "commit", "-qm", "tiny project"],
            ["git", "remote", "add", "origin", str(remote)],
            ["git", "push", "-q", "origin", "main"],
        ):
            sh(cmd, seed, env)
        self.remote = remote
        return seed

    def clone(self, name: str) -> Path:
        sh(["git", "clone", "-q", str(self.remote), name], self.base, self.env)
        return self.base / name

    def start_worker(self, name: str) -> subprocess.Popen:
        machine = self.base / name
        machine.mkdir(exist_ok=True)
        env = self.env | {"PREFECT_HOME": str(machine / "prefect")}
        log = open(self.base / f"{name}.log", "w")
        proc = subprocess.Popen(
            [str(BIN / "ugan"), "worker", "--pool", POOL, "--workdir", str(machine / "slots"),
             "--name", name],
            cwd=machine, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.procs[name] = proc
        return proc

    def ugan(self, *args: str, cwd: Path, timeout: float = 900) -> str:
        env = self.env | {"PREFECT_HOME": str(self.base / "submitter-prefect")}
        return sh([str(BIN / "ugan"), *args], cwd, env, timeout)

    def stop(self) -> None:
        for proc in self.procs.values():
            kill_tree(proc, signal.SIGTERM)
            kill_tree(proc, signal.SIGKILL)
        if self.services is not None:
            self.services.down()
            shutil.rmtree(self.pg_root, ignore_errors=True)
