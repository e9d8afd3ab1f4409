"""A profile's grid as queued DVC experiments on two parallel workers (`ugan queue`, which runs
`dvc exp run --queue` per experiment and `dvc queue start -j 2`), in a temporary git repo on tiny
params. The workers run the stages in temporary workspaces under .dvc/tmp/exps; their MLflow
runs must land in the project's own store, with no MLFLOW_TRACKING_URI set."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from shell_project import shell_project

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = {
    "classifier": {"steps": 10, "min_accuracy": 0.0},
    "model": {"latent_dim": 16, "base_channels": 8},
    "vae": {"steps": 10, "sample_every": 10},
    "dae": {"steps": 10, "sample_every": 10},
    "gan": {"steps": 30, "checkpoint_every": 10, "batch_size": 32, "num_sample_images": 16},
    "eval": {"num_samples": 100, "kid_subset_size": 50},
    "tracking": {"log_models": False},
    "device": "cpu",
}
PROFILE = (
    "description: two seeds, one experiment each\n"
    "grid:\n  gans: {dcgan: {loss: ns}}\n  inits: [random]\n  seeds: [0, 1]\n"
)


RENDEZVOUS_S = 300
RENDEZVOUS = f"""import os, pathlib, sys, time
arrivals = pathlib.Path("{{arrivals}}")
(arrivals / str(os.getpid())).touch()
deadline = time.time() + {RENDEZVOUS_S}
while len(list(arrivals.iterdir())) < 2:
    if time.time() > deadline:
        sys.exit("the other experiment never ran beside this one")
    time.sleep(0.1)
# What this stage's torch would be sized by now: the live count `ugan queue` keeps.
(arrivals / str(os.getpid())).write_text(pathlib.Path(os.environ["UGAN_JOBS_FILE"]).read_text())
"""


def _sh(cmd: list[str], cwd: Path, env: dict, timeout: float = 300) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


@pytest.fixture
def project(tmp_path) -> tuple[Path, dict]:
    path = tmp_path / "project"
    path.mkdir()
    for name in ("src", "stages", "data/sources"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = _merge(params, {k: v for k, v in TINY.items() if k in params})
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    (path / "profiles").mkdir()
    (path / "profiles/tiny.yaml").write_text(PROFILE)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(path / "src"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    env.pop("UGAN_PIPELINE_ID", None)
    _sh(["git", "init", "-q"], path, env)
    _sh(["dvc", "init", "-q"], path, env)
    _sh(["dvc", "config", "core.analytics", "false"], path, env)
    # What the grid's runs share (prepared data, inits) runs once here, as the upstream of one
    # run; the experiments take it from DVC's cache and train only their own runs.
    _sh(["dvc", "repro", "train_gan@dcgan"], path, env, 600)
    # A rendezvous stage proves the two experiments ran at once, whatever the machine's speed:
    # each waits (at most RENDEZVOUS_S) until both have arrived, so run one after the other
    # they would fail.
    arrivals = tmp_path / "arrivals"
    arrivals.mkdir()
    (path / "rendezvous.py").write_text(RENDEZVOUS.format(arrivals=arrivals))
    with open(path / "dvc.yaml", "a") as dvc_yaml:
        dvc_yaml.write(
            "\n  rendezvous:\n    cmd: python rendezvous.py\n"
            "    deps: [rendezvous.py]\n    params: [runs]\n"
        )
    _sh(["git", "add", "-A"], path, env)
    _sh(["git", "commit", "-qm", "tiny project"], path, env)
    return path, env


def test_a_grid_queued_on_two_workers_logs_every_run_to_the_project_store(project):
    path, env = project
    queue = [
        sys.executable,
        "-m",
        "ugan.pipeline.cli",
        "queue",
        "tiny",
        "-j",
        "2",
        "--targets",
        "train_gan",
        "rendezvous",
    ]
    output = _sh(queue, path, env, 900)
    assert "queued 2 experiments" in output
    names = [line.split(":")[0] for line in output.splitlines() if line.endswith(": Success")]
    assert len(names) == 2, output[-3000:]
    assert yaml.safe_load((path / "params.yaml").read_text())["runs"].keys() == {
        "dcgan",
        "dcgan-unbalanced",
    }, "the workspace params must be restored after queueing"

    # `dvc exp show` lists both experiments, each with the one run of the grid it trained.
    shown = json.loads(_sh(["dvc", "exp", "show", "--json"], path, env))
    experiments = [e for rev in shown for e in rev.get("experiments") or []]
    listed = {e["name"]: e["revs"][0]["data"] for e in experiments}
    assert set(names) <= set(listed), sorted(listed)
    runs = sorted(list(listed[n]["params"]["params.yaml"]["data"]["runs"]) for n in names)
    assert runs == [["dcgan-s0"], ["dcgan-s1"]], runs

    store = path / "mlflow.db"
    assert store.is_file()
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    runs = client.search_runs([client.get_experiment_by_name("ugan").experiment_id])
    queued = [r for r in runs if r.data.tags["ugan.pipeline_id"].startswith("exp-")]
    trained = {r.data.tags["ugan.run_key"]: r for r in queued if "ugan.run_key" in r.data.tags}
    assert set(trained) == {"dcgan-s0", "dcgan-s1"}
    assert {r.info.status for r in trained.values()} == {"FINISHED"}
    # One pipeline (and one parent run) per queued experiment.
    pipelines = {r.data.tags["ugan.pipeline_id"] for r in trained.values()}
    assert pipelines == {f"exp-{name}" for name in names}
    parents = [r for r in runs if r.data.tags.get("ugan.stage") == "pipeline"]
    assert {p.data.tags["ugan.pipeline_id"] for p in parents} >= pipelines
    # Both experiments passed the rendezvous: the queue really ran them at the same time.
    arrived = list((path.parent / "arrivals").iterdir())
    assert len(arrived) == 2
    # Each read the live jobs count (`ugan queue` keeps it from `dvc queue status`): two at once.
    assert [a.read_text() for a in arrived] == ["2", "2"]
    # Nothing was logged into a worker's temporary workspace.
    assert not list((path / ".dvc/tmp").rglob("mlflow.db"))
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_grid_of_one_experiment_on_two_workers_trains_on_every_core(tmp_path):
    """`ugan grid --jobs 2` queues one experiment: one worker runs it, so its stages read a
    live count of 1 (all the cores), where `UGAN_JOBS=2` alone gave them half."""
    path, seen = tmp_path / "project", tmp_path / "seen"
    path.mkdir()
    seen.mkdir()
    record = f"cat $UGAN_JOBS_FILE > {seen}/{{out}} && echo done > {{out}}"
    env = shell_project(path, ["a"], record)
    shutil.copy(ROOT / "params.yaml", path / "params.yaml")  # what the profile is applied to
    (path / "profiles").mkdir()
    (path / "profiles/tiny.yaml").write_text(PROFILE)
    _sh(["git", "add", "-A"], path, env)
    _sh(["git", "commit", "-qm", "shell project"], path, env)
    env["PYTHONPATH"] = str(ROOT / "src")
    output = _sh([sys.executable, "-m", "ugan.pipeline.cli", "grid", "tiny", "--jobs", "2"],
                 path, env, 600)  # fmt: skip
    assert "done. Results: dvc exp show" in output
    assert (seen / "train-a.txt").read_text() == "1"
    assert (seen / "eval-a.txt").read_text() == "1"
