"""The Prefect flow and its nightly deployment, for real: a Prefect server on 127.0.0.1, the
deployment served by `ugan serve`, runs triggered by `ugan trigger`, the DVC pipeline of a tiny
project in a temporary git repo, the MLflow model registry in its sqlite store.

One served deployment and its first (full) run are shared by this module and the browser test
(`nightly()`); later runs reuse the cached pipeline and take seconds.
"""

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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import mlflow
import pytest
import yaml
from pipeline_project import TINY, _merge

from ugan.pipeline import champion as champ
from ugan.pipeline.flows import (
    FLOW_NAME,
    StageError,
    TransientStageError,
    classify_failure,
    dvc_stages,
    is_transient,
    outcome,
    run_stage,
)
from ugan.tracking.pipeline_run import (
    PARENT_ENV,
    PIPELINE_ENV,
    close_pipeline_run,
    open_pipeline_run,
)
from ugan.tracking.stage_run import StageRun

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


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    with nightly(tmp_path_factory) as instance:
        yield instance


def _stage_runs(client: mlflow.MlflowClient, pipeline: str) -> list:
    experiment = client.get_experiment_by_name("ugan").experiment_id
    runs = client.search_runs([experiment], f"tags.`ugan.pipeline_id` = '{pipeline}'")
    return [r for r in runs if r.data.tags["ugan.stage"] != "pipeline"]


def _parent(client: mlflow.MlflowClient, result: dict):
    return client.get_run(result["parent_run_id"])


def _point_champion_at_the_other_run(served: Nightly, fid: float | None = None) -> tuple:
    """Make the non-candidate run's generator the champion (with its real FID unless `fid`)."""
    candidate = served.first["champion"]["candidate"]
    other = next(k for k in ("dcgan", "dcgan-unbalanced") if k != candidate["run_key"])
    real_fid, step = champ.read_final_fid(served.path / "evaluation" / other / "metrics.json")
    client = served.mlflow
    run_id = champ.find_train_run(
        client, "ugan", other, served.path / "runs" / other / "losses.csv"
    )
    version = champ.register(client, MODEL, champ.Candidate(other, real_fid, step, run_id))
    client.set_model_version_tag(MODEL, version.version, champ.FID_TAG, repr(fid or real_fid))
    client.set_registered_model_alias(MODEL, champ.CHAMPION, version.version)
    return str(version.version), real_fid, candidate


# -- stages and failures: no server needed -----------------------------------------------------


@pytest.mark.parametrize(
    ("output", "kind"),
    [
        ("error: gan.loss: got 'vanilla', allowed values are 'ns'", StageError),
        ("Traceback ...\nOSError: [Errno 28] No space left on device", TransientStageError),
        ("ERROR: unexpected error - [Errno 5] Input/output error", TransientStageError),
        (
            "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked",
            TransientStageError,
        ),
        ("ERROR: Unable to acquire lock. Most likely another DVC process", TransientStageError),
        (  # what a real second `dvc` prints (see the test with one below)
            "ERROR: '/p/data/prepared/dataset.npz' is busy, it is being blocked by:\n"
            "  (PID 31803): /venv/bin/dvc repro hold/dvc.yaml:hold",
            TransientStageError,
        ),
        ("Traceback ...\nFileNotFoundError: [Errno 2] No such file: 'x'", StageError),
        ("Traceback ...\nPermissionError: [Errno 13] Permission denied: 'x'", StageError),
        ("Traceback ...\nZeroDivisionError: division by zero", StageError),
        # A config error that mentions a lock is still a config error.
        ("database is locked\nerror: data.seed: got 'x'", StageError),
    ],
)
def test_only_transient_faults_are_classified_for_retry(output, kind):
    error = classify_failure("prepare", output)
    assert type(error) is kind
    assert is_transient(error) == (kind is TransientStageError)
    assert error.args[0].startswith("prepare")


def test_oserrors_raised_in_the_task_itself_are_retried_unless_about_a_path():
    assert is_transient(ConnectionResetError("reset")) and is_transient(OSError(28, "full"))
    assert not is_transient(FileNotFoundError("x")) and not is_transient(ValueError("x"))


def test_stage_outcome_is_read_from_what_dvc_says():
    assert outcome("prepare", "Running stage 'prepare':\n> python stages/prepare.py") == "ran"
    assert outcome("report", "Stage 'report' didn't change, skipping") == "cached"
    cached = "Stage 'train_gan@a' is cached - skipping run, checking out outputs"
    assert outcome("train_gan@a", cached) == "cached"
    with pytest.raises(StageError, match="neither ran nor skipped"):
        outcome("prepare", "Stage 'report' didn't change, skipping")


# -- parent runs: one per pipeline execution ---------------------------------------------------


def test_stages_of_one_pipeline_find_or_create_one_parent_run(monkeypatch):
    monkeypatch.setenv(PIPELINE_ENV, "test-pipeline-1")
    monkeypatch.delenv(PARENT_ENV, raising=False)
    ids = []
    for stage in ("prepare", "report"):
        with StageRun(stage, {"data": {"seed": 0}}) as run:
            ids.append(run.run_id)
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    parents = {client.get_run(i).data.tags["mlflow.parentRunId"] for i in ids}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.info.run_name == "pipeline test-pipeline-1"
    assert parent.data.tags["ugan.stage"] == "pipeline"
    assert parent.data.tags["ugan.pipeline_id"] == "test-pipeline-1"
    assert parent.info.status == "FINISHED", "the stages end the parent they created"


def test_a_parent_run_passed_by_the_orchestrator_is_used_and_left_to_it(monkeypatch):
    monkeypatch.setenv(PIPELINE_ENV, "test-pipeline-2")
    parent = open_pipeline_run("test-pipeline-2", "ugan")
    monkeypatch.setenv(PARENT_ENV, parent)
    with StageRun("prepare", {}) as run:
        pass
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    assert client.get_run(run.run_id).data.tags["mlflow.parentRunId"] == parent
    assert client.get_run(parent).info.status == "RUNNING", "the orchestrator ends it"
    close_pipeline_run(parent, "FINISHED")
    assert client.get_run(parent).info.status == "FINISHED"
    experiment = client.get_experiment_by_name("ugan").experiment_id
    assert len(client.search_runs([experiment], "tags.`ugan.stage` = 'pipeline'")) == 1


# -- the served deployment ----------------------------------------------------------------------


@pytest.mark.slow
def test_stage_order_comes_from_dvc(served):
    order = dvc_stages(served.path)
    listed = sh(["dvc", "stage", "list", "--name-only"], served.path, served.env).split()
    assert sorted(order) == sorted(listed) and len(order) == len(set(order))
    dot = sh(["dvc", "dag", "--dot"], served.path, served.env)
    edges = re.findall(r'"([^"]+)" -> "([^"]+)"', dot)
    assert len(edges) >= 10
    for upstream, downstream in edges:
        assert order.index(upstream) < order.index(downstream), (upstream, downstream)
    assert [s["stage"] for s in served.first["stages"]] == order


@pytest.mark.slow
def test_the_deployment_carries_its_cron_schedule(served):
    deployment = served.deployment()
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == [CRON]
    assert all(s["active"] for s in deployment["schedules"])
    assert deployment["parameters"] == {"project": str(served.path), "model_name": MODEL}


@pytest.mark.slow
def test_triggering_a_deployment_the_server_lacks_says_to_serve_it(served):
    result = subprocess.run(
        [sys.executable, "-m", "ugan.pipeline.cli", "trigger", "--name", "no-such"],
        cwd=served.path,
        env=served.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"has no deployment {FLOW_NAME}/no-such" in result.stderr


@pytest.mark.slow
def test_first_run_ran_every_stage_and_crowned_its_best_generator(served):
    first, client, stages = served.first, served.mlflow, dvc_stages(served.path)
    assert first["ran"] == stages and first["cached"] == []
    assert not first["all_cached"]
    assert first["message"].startswith(f"ran {len(stages)} of {len(stages)} stages")

    decision = first["champion"]
    fids = {
        key: champ.read_final_fid(served.path / f"evaluation/{key}/metrics.json")[0]
        for key in ("dcgan", "dcgan-unbalanced")
    }
    assert decision["action"] == "first"
    assert decision["candidate"]["run_key"] == min(fids, key=fids.get)
    assert decision["candidate"]["fid"] == min(fids.values())
    champion = client.get_model_version_by_alias(MODEL, champ.CHAMPION)
    assert str(champion.version) == decision["candidate_version"]
    assert champion.run_id == decision["candidate"]["train_run_id"]
    trained = client.get_run(champion.run_id)
    assert trained.info.run_name == f"train_gan@{decision['candidate']['run_key']}"
    assert float(champion.tags[champ.FID_TAG]) == min(fids.values())

    # One parent run for the execution; every stage run hangs under it.
    parent = _parent(client, first)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == f"pipeline {first['pipeline_id']}"
    assert parent.data.tags["ugan.champion.decision"] == "first"
    assert parent.data.metrics["candidate_fid"] == decision["candidate"]["fid"]
    stage_runs = _stage_runs(client, first["pipeline_id"])
    names = {r.info.run_name for r in stage_runs}
    assert {n for n in names if "/" not in n} == set(first["ran"]) - UNTRACKED_STAGES
    assert all(n.startswith("modes@") for n in names if "/" in n), "only benchmark cells nest"
    assert {r.data.tags["mlflow.parentRunId"] for r in stage_runs} == {parent.info.run_id}


@pytest.mark.slow
def test_the_champion_loads_from_the_registry_and_samples(served):
    import mlflow.pytorch
    import torch

    latent = TINY["model"]["latent_dim"]
    # The safe path (weights-only file train_gan logs beside the model) and MLflow's own.
    safe = champ.load_champion_generator(served.env["MLFLOW_TRACKING_URI"], MODEL)
    mlflow.set_tracking_uri(served.env["MLFLOW_TRACKING_URI"])
    exported = mlflow.pytorch.load_model(f"models:/{MODEL}@{champ.CHAMPION}")
    z = torch.randn(2, latent)  # the batch size of the logged input example
    images = exported(z)
    assert tuple(images.shape) == (2, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(safe.eval()(z), images)  # the same generator, both ways


@pytest.mark.slow
def test_runs_compare_side_by_side_in_mlflow(served):
    """Same metric names across runs of a stage, params under the keys of params.yaml,
    sample grids under samples/."""
    client = served.mlflow
    runs = {r.info.run_name: r for r in _stage_runs(client, served.first["pipeline_id"])}
    for stage in ("train_gan", "evaluate"):
        a, b = runs[f"{stage}@dcgan"], runs[f"{stage}@dcgan-unbalanced"]
        assert set(a.data.metrics) == set(b.data.metrics) and a.data.metrics
        assert set(a.data.params) == set(b.data.params)
    params = yaml.safe_load((served.path / "params.yaml").read_text())
    gan = runs["train_gan@dcgan"].data.params
    assert gan["gan.optim.lr"] == str(params["gan"]["optim"]["lr"])
    assert gan["model.latent_dim"] == str(params["model"]["latent_dim"])
    for name in ("train_gan@dcgan", "train_gan@dcgan-unbalanced", "pretrain_vae"):
        grids = [a.path for a in client.list_artifacts(runs[name].info.run_id, "samples")]
        assert grids and all(re.fullmatch(r"samples/[\w.-]+\.png", g) for g in grids), grids


@pytest.mark.slow
def test_unchanged_data_runs_cached_and_a_better_candidate_takes_the_alias(served):
    old_version, old_fid, candidate = _point_champion_at_the_other_run(served)
    assert old_fid > candidate["fid"], "the other run's generator must score worse"

    result, seconds = served.trigger()
    print(f"nightly run with unchanged data: {seconds:.1f} s wall ({result['message']})")
    assert result["all_cached"] and result["ran"] == []
    stages = len(dvc_stages(served.path))
    assert result["message"].startswith(f"all {stages} stages cached: nothing changed")
    decision = result["champion"]
    assert decision["action"] == "promoted"
    assert decision["champion_version"] == old_version and decision["champion_fid"] == old_fid
    client = served.mlflow
    champion = client.get_model_version_by_alias(MODEL, champ.CHAMPION)
    assert str(champion.version) == decision["candidate_version"] != old_version
    parent = _parent(client, result)
    assert parent.data.tags["ugan.champion.decision"] == "promoted"
    assert parent.data.tags["ugan.flow.message"] == result["message"]
    assert parent.data.metrics["candidate_fid"] == candidate["fid"]
    assert parent.data.metrics["champion_fid"] == old_fid
    assert _stage_runs(client, result["pipeline_id"]) == [], "cached stages log no runs"


@pytest.mark.slow
def test_a_worse_candidate_leaves_the_alias_where_it_is(served):
    fake_fid = served.first["champion"]["candidate"]["fid"] / 2
    old_version, _, candidate = _point_champion_at_the_other_run(served, fid=fake_fid)

    result, _ = served.trigger()
    decision = result["champion"]
    assert decision["action"] == "kept" and decision["champion_fid"] == fake_fid
    assert decision["candidate"]["fid"] == candidate["fid"] > fake_fid
    client = served.mlflow
    assert str(client.get_model_version_by_alias(MODEL, champ.CHAMPION).version) == old_version
    parent = _parent(client, result)
    assert parent.data.tags["ugan.champion.decision"] == "kept"
    assert parent.data.tags["ugan.champion.version"] == old_version
    assert parent.data.metrics["champion_fid"] == fake_fid


@pytest.fixture
def prefect_api(served, monkeypatch):
    """In-process Prefect calls go to the test server."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW,
        temporary_settings,
    )

    monkeypatch.setenv("PATH", served.env["PATH"])
    monkeypatch.setenv("PYTHONPATH", served.env["PYTHONPATH"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.env["MLFLOW_TRACKING_URI"])
    quiet = {PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}  # tasks run outside a flow
    with temporary_settings(updates={PREFECT_API_URL: served.api, **quiet}):
        yield


@pytest.mark.slow
def test_a_config_error_in_a_stage_fails_at_once_with_its_message(served, prefect_api):
    params_before = (served.path / "params.yaml").read_text()
    lock_before = (served.path / "dvc.lock").read_text()
    served.set_params({"data": {"heldout_fraction": 1.5}})
    try:
        task = run_stage.with_options(retry_delay_seconds=0)
        state = task(str(served.path), "prepare", {}, return_state=True)
    finally:
        (served.path / "params.yaml").write_text(params_before)
        sh(["dvc", "checkout", "prepare"], served.path, served.env)  # DVC removed its outs
    assert state.is_failed()
    with pytest.raises(StageError) as raised:
        state.result()
    message = str(raised.value)
    assert message.startswith("prepare: invalid params:")
    assert "data.heldout_fraction: Input should be less than 1 (got 1.5)" in message
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        assert client.read_task_run(state.state_details.task_run_id).run_count == 1
    assert (served.path / "dvc.lock").read_text() == lock_before


HOLDER = """import pathlib, time
pathlib.Path("started").touch()
while not pathlib.Path("release").exists():
    time.sleep(0.05)
pathlib.Path("out.txt").write_text("held")
"""


@pytest.mark.slow
def test_a_dvc_path_held_by_another_dvc_process_is_retried_until_it_frees(served, prefect_api):
    # A real second `dvc repro`: its stage reads prepare's output, so DVC holds a read lock on
    # it while the stage runs; `prepare` needs the write lock and fails "… is busy, it is being
    # blocked by (PID …)" until the holder finishes.
    hold = served.path / "hold"
    hold.mkdir()
    (hold / "wait.py").write_text(HOLDER)
    (hold / "dvc.yaml").write_text(
        "stages:\n  hold:\n    cmd: python wait.py\n"
        "    deps: [wait.py, ../data/prepared/dataset.npz]\n    outs: [out.txt]\n"
    )
    holder = subprocess.Popen(
        ["dvc", "repro", "hold/dvc.yaml:hold"],
        cwd=served.path,
        env=served.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    waiting = {
        "task_runs": {"name": {"any_": ["prepare"]}, "state": {"name": {"any_": ["AwaitingRetry"]}}}
    }

    def release_once_a_retry_is_waiting():
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: httpx.post(f"{served.api}/task_runs/filter", json=waiting).json(),
                120,
                "a task run awaiting retry",
            )
        (hold / "release").touch()

    try:
        wait_for(lambda: (hold / "started").exists() or holder.poll() is not None, 120, "holder")
        assert holder.poll() is None, holder.communicate()[0][-2000:]
        threading.Thread(target=release_once_a_retry_is_waiting, daemon=True).start()
        result = run_stage.with_options(retry_delay_seconds=3)(str(served.path), "prepare", {})
    finally:
        (hold / "release").touch()
        holder.communicate(timeout=120)
        shutil.rmtree(hold)
    assert result["status"] == "cached" and result["attempts"] == 2
