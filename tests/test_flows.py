"""The Prefect flow and its nightly deployment, for real: a Prefect server on 127.0.0.1, the
deployment served by `ugan serve`, runs triggered by `ugan trigger`, the DVC pipeline of a tiny
project in a temporary git repo, the MLflow model registry in its sqlite store.

One served deployment and its first (full) run are shared by this module and the browser test
(`nightly()`); later runs reuse the cached pipeline and take seconds.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import threading

import httpx
import mlflow
import pytest
import yaml
from nightly_harness import CRON, MODEL, UNTRACKED_STAGES, Nightly, nightly, sh, wait_for
from pipeline_project import TINY
from shell_project import shell_project

from ugan.core.runtime import available_cores
from ugan.pipeline import champion as champ
from ugan.pipeline.dvc_plan import dvc_stages
from ugan.pipeline.flows import FLOW_NAME, StageError, run_stage


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
def test_the_runs_train_side_by_side_as_in_ugan_run(served):
    """Two cores: the two runs' train_gan tasks overlap in time (run_stages); one: in turn."""
    spans = {
        s["stage"]: (s["started_at"], s["started_at"] + s["seconds"])
        for s in served.first["stages"]
        if s["stage"].startswith("train_gan@")
    }
    (a_start, a_end), (b_start, b_end) = spans.values()
    assert (a_start < b_end and b_start < a_end) == (available_cores() >= 2), spans


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


@pytest.mark.slow
def test_the_flow_starts_the_next_cell_as_soon_as_one_ends_and_shares_out_its_cores(
    served, prefect_api, tmp_path, monkeypatch
):
    """Three runs' cells, two at a time, on a shell-stage DVC project: the third starts when the
    short first one ends, not after the long second one too (no waves), and each stage reads
    how many cells run (`UGAN_JOBS_FILE`): the third ends alone."""
    from prefect import flow

    from ugan.pipeline.flows import run_cells

    record = "echo $(date +%s.%N) $(cat $UGAN_JOBS_FILE) >> {out}"
    stage = f"{record}; case {{item}} in a) sleep 1;; b) sleep 4;; c) sleep 9;; esac; {record}"
    env = shell_project(tmp_path, ["a", "b", "c"], stage)
    sh(["dvc", "repro", "shared"], tmp_path, env)
    monkeypatch.chdir(tmp_path)
    cells = [[f"train_gan@{run}", f"evaluate@{run}"] for run in ("a", "b", "c")]
    outcomes = flow(name="cells")(run_cells)(str(tmp_path), cells, 2, {})
    assert set(outcomes) == {stage for cell in cells for stage in cell}
    assert all(o["status"] == "ran" for o in outcomes.values())

    def lines(name: str) -> list[tuple[float, str]]:
        return [(float(t), n) for t, n in (ln.split() for ln in (tmp_path / name).open())]

    (c_start, c_first), (_, c_last) = lines("train-c.txt")
    b_end = lines("eval-b.txt")[-1][0]
    assert c_start < b_end, "the third cell waited for the whole first wave"
    assert lines("train-a.txt")[0][1] == "2" and (c_first, c_last) == ("2", "1")


@pytest.mark.slow
def test_a_failed_cell_fails_the_flow_with_its_stage_named(
    served, prefect_api, tmp_path, monkeypatch
):
    """A stage failing in the flow's cells raises its StageError, as before the cells stopped
    running in waves."""
    from prefect import flow

    from ugan.pipeline.flows import run_cells

    env = shell_project(tmp_path, ["bad", "ok"])
    sh(["dvc", "repro", "shared"], tmp_path, env)
    monkeypatch.chdir(tmp_path)
    cells = [[f"train_gan@{run}", f"evaluate@{run}"] for run in ("bad", "ok")]
    with pytest.raises(StageError, match="train_gan@bad"):
        flow(name="cells")(run_cells)(str(tmp_path), cells, 2, {})
