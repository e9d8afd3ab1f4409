"""The champion logic against a real MLflow store and model registry (sqlite, per test).

The training runs here are MLflow runs made by hand with the artifacts train_gan logs (a
losses.csv and a `generator` folder); test_flows.py checks the same logic on the real pipeline
and loads the real champion."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path

import mlflow
import pytest
import torch

from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.errors import CheckpointError, UserError
from ugan.nets.dcgan import Generator
from ugan.nets.generator_file import GENERATOR_FILE, generator_payload
from ugan.pipeline import champion as champ
from ugan.pipeline.champion import Candidate, RegistryError


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An sqlite store with MLflow's schema: created once (the migrations take seconds),
    copied for each test."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def client(empty_store, tmp_path, monkeypatch) -> mlflow.MlflowClient:
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    client.create_experiment("ugan", artifact_location=str(tmp_path / "artifacts"))
    return client


def _experiment(client: mlflow.MlflowClient) -> str:
    return client.get_experiment_by_name("ugan").experiment_id


def _train_run(client, tmp_path: Path, key: str, losses: str, *, generator=True) -> str:
    """A finished train_gan@<key> run with the artifacts train_gan logs."""
    run = client.create_run(
        _experiment(client),
        tags={"ugan.stage": "train_gan", "ugan.run_key": key},
        run_name=f"train_gan@{key}",
    )
    folder = tmp_path / run.info.run_id
    (folder / "generator").mkdir(parents=True)
    (folder / "losses.csv").write_text(losses)
    (folder / "generator" / "MLmodel").write_text("flavors: {}\n")
    client.log_artifact(run.info.run_id, str(folder / "losses.csv"))
    if generator:
        client.log_artifacts(run.info.run_id, str(folder / "generator"), "generator")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _metrics(project: Path, key: str, final_fid: float, best_fid: float) -> None:
    out = project / "evaluation" / key
    out.mkdir(parents=True)
    final = {"step": 12, "fid": final_fid}
    (out / "metrics.json").write_text(json.dumps({"final": final, "best_fid": best_fid}))


def test_the_candidate_is_the_run_whose_final_generator_scores_best(tmp_path):
    _metrics(tmp_path, "a", final_fid=30.0, best_fid=10.0)  # best checkpoint is not the model
    _metrics(tmp_path, "b", final_fid=20.0, best_fid=25.0)
    assert champ.pick_candidate(tmp_path, ["a", "b"]) == Candidate("b", 20.0, 12)
    assert champ.pick_candidate(tmp_path, ["a"]).run_key == "a"


def test_a_run_trained_with_ema_is_scored_by_its_average_the_model_it_logs(tmp_path):
    _metrics(tmp_path, "a", final_fid=30.0, best_fid=10.0)
    path = tmp_path / "evaluation" / "a" / "metrics.json"
    ema = {"final": {"step": 12, "fid": 15.0}, "best_fid": 15.0, "best_fid_step": 12}
    path.write_text(json.dumps({**json.loads(path.read_text()), "ema": ema}))
    _metrics(tmp_path, "b", final_fid=20.0, best_fid=20.0)
    assert champ.pick_candidate(tmp_path, ["a", "b"]) == Candidate("a", 15.0, 12)


def test_missing_or_broken_scores_name_the_file(tmp_path):
    with pytest.raises(RegistryError, match=r"evaluation/a/metrics\.json: no final FID"):
        champ.pick_candidate(tmp_path, ["a"])
    _metrics(tmp_path, "a", final_fid=math.nan, best_fid=1.0)
    with pytest.raises(RegistryError, match="final FID is nan"):
        champ.pick_candidate(tmp_path, ["a"])
    with pytest.raises(RegistryError, match="`runs:` is empty"):
        champ.pick_candidate(tmp_path, [])


def test_the_train_run_is_the_one_that_produced_the_workspace_outputs(client, tmp_path):
    older = _train_run(client, tmp_path, "a", "step,d_loss\n1,0.5\n")
    _train_run(client, tmp_path, "a", "step,d_loss\n1,0.7\n")  # newer, other outputs
    _train_run(client, tmp_path, "a", "step,d_loss\n1,0.5\n", generator=False)  # no model
    _train_run(client, tmp_path, "b", "step,d_loss\n1,0.5\n")  # another run key
    workspace = tmp_path / "losses.csv"
    workspace.write_text("step,d_loss\n1,0.5\n")  # as DVC restored it from its run cache
    assert champ.find_train_run(client, "ugan", "a", workspace) == older

    workspace.write_text("step,d_loss\n1,0.9\n")
    with pytest.raises(RegistryError, match=r"train_gan@a runs .*tracking\.log_models"):
        champ.find_train_run(client, "ugan", "a", workspace)
    with pytest.raises(RegistryError, match="no MLflow experiment 'other'"):
        champ.find_train_run(client, "other", "a", workspace)


def test_the_alias_moves_only_to_a_better_generator(client, tmp_path):
    def candidate(fid: float) -> Candidate:
        return Candidate("a", fid, 12, _train_run(client, tmp_path, "a", f"fid {fid}\n"))

    def champion() -> str:
        return str(client.get_model_version_by_alias("m", champ.CHAMPION).version)

    first = candidate(50.0)
    decision = champ.decide(client, "m", first)
    assert (decision.action, champion(), decision.champion_fid) == ("first", "1", None)
    assert "first champion of m" in decision.summary()

    again = champ.decide(client, "m", first)
    assert again.action == "unchanged" and champion() == "1"
    assert len(client.search_model_versions("name = 'm'")) == 1, "one version per train run"

    better = champ.decide(client, "m", candidate(40.0))
    assert (better.action, better.champion_version, better.champion_fid) == ("promoted", "1", 50.0)
    assert champion() == "2" == better.champion_after

    worse = champ.decide(client, "m", candidate(45.0))
    assert (worse.action, worse.candidate_version, worse.champion_after) == ("kept", "3", "2")
    assert champion() == "2"
    assert "does not beat champion v2 (FID 40.000)" in worse.summary()

    tie = champ.decide(client, "m", candidate(40.0))
    assert tie.action == "kept" and champion() == "2"
    version = client.get_model_version("m", "3")
    assert version.tags[champ.FID_TAG] == "45.0" and version.tags["ugan.run_key"] == "a"
    assert version.source.endswith(f"{version.run_id}/generator")


def test_a_champion_without_a_recorded_score_is_an_error(client, tmp_path):
    run_id = _train_run(client, tmp_path, "a", "x\n")
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{run_id}/generator", run_id)
    client.set_registered_model_alias("m", champ.CHAMPION, "1")
    with pytest.raises(RegistryError, match=r"champion of 'm' \(version 1\) has no 'ugan\.fid'"):
        champ.decide(client, "m", Candidate("a", 1.0, 12, run_id))


def test_the_decision_and_both_scores_go_on_the_parent_run(client, tmp_path):
    parent = client.create_run(_experiment(client), run_name="pipeline p").info.run_id
    candidate = Candidate("b", 20.5, 12, _train_run(client, tmp_path, "b", "y\n"))
    champ.record(client, parent, champ.Decision("m", "kept", candidate, "4", "2", 18.0))
    run = client.get_run(parent)
    assert run.data.metrics == {"candidate_fid": 20.5, "champion_fid": 18.0}
    tags = run.data.tags
    assert tags["ugan.champion.decision"] == "kept" and tags["ugan.champion.version"] == "2"
    assert tags["ugan.candidate.run_key"] == "b" and tags["ugan.candidate.version"] == "4"


def test_crown_checks_the_workspace_candidate_against_the_champion(client, tmp_path):
    for key, fid in (("a", 30.0), ("b", 25.0)):
        _metrics(tmp_path, key, final_fid=fid, best_fid=fid)
        (tmp_path / "runs" / key).mkdir(parents=True)
        (tmp_path / "runs" / key / "losses.csv").write_text(f"losses of {key}\n")
        _train_run(client, tmp_path / "mlflow", key, f"losses of {key}\n")
    decision = champ.crown(client, "m", tmp_path, ["a", "b"], "ugan")
    assert decision.action == "first" and decision.candidate.run_key == "b"
    train = client.get_run(decision.candidate.train_run_id)
    assert train.info.run_name == "train_gan@b"


# -- loading the champion without running code ------------------------------------------------


class _Payload:
    """Unpickling this creates the folder `marker`: what a hostile pickle could do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _champion_with_generator_file(client, tmp_path: Path, write) -> str:
    """A train_gan run whose `generator` folder holds `generator.pt` as `write(path)` makes it,
    registered as version 1 of model "m" with the alias champion."""
    run_id = _train_run(client, tmp_path, "a", "x\n", generator=False)
    folder = tmp_path / "logged" / "generator"
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    write(folder / GENERATOR_FILE)
    client.log_artifacts(run_id, str(folder), champ.MODEL_ARTIFACT)
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{run_id}/{champ.MODEL_ARTIFACT}", run_id)
    client.set_registered_model_alias("m", champ.CHAMPION, "1")
    return run_id


def test_the_champion_loads_from_its_weights_only_generator_file(client, tmp_path, tiny_arch):
    generator = Generator(tiny_arch)
    payload = generator_payload(generator, "normal", step=12)
    _champion_with_generator_file(client, tmp_path, lambda path: save_checkpoint(path, payload))
    for source in (client, client.tracking_uri):
        loaded = champ.load_champion_generator(source, "m")
        assert type(loaded) is Generator and loaded.prior == "normal"
        for key, value in generator.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        assert tuple(loaded(torch.randn(2, tiny_arch.latent_dim)).shape) == (2, 1, 28, 28)


@pytest.mark.parametrize("container", ["torch.save", "plain pickle"])
def test_a_champion_file_that_would_run_code_is_refused_and_runs_nothing(
    client, tmp_path, container
):
    marker = tmp_path / "code-ran"
    evil = {"state_dict": {}, "arch": {}, "net": "dcgan", "hook": _Payload(str(marker))}

    def write(path: Path) -> None:
        if container == "torch.save":
            torch.save(evil, path)
        else:
            path.write_bytes(pickle.dumps(evil, protocol=2))

    _champion_with_generator_file(client, tmp_path, write)
    with pytest.raises(CheckpointError, match=r"generator\.pt cannot be loaded safely") as info:
        champ.load_champion_generator(client, "m")
    assert isinstance(info.value, UserError)
    assert not marker.exists(), "unpickling ran the payload"

    # The payload is live: an unrestricted load of the same logged file runs it.
    copy = client.download_artifacts(
        client.get_model_version("m", "1").run_id, "generator/generator.pt", str(tmp_path / "dl")
    )
    if container == "torch.save":
        torch.load(copy, weights_only=False)
    else:
        pickle.loads(Path(copy).read_bytes())
    assert marker.is_dir()


def test_a_champion_without_a_generator_file_says_what_is_missing(client, tmp_path):
    run_id = _train_run(client, tmp_path, "a", "x\n")  # the MLflow model folder only
    with pytest.raises(RegistryError, match=r"no champion of 'm' .*no alias 'champion'"):
        champ.load_champion_generator(client, "m")
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{run_id}/generator", run_id)
    client.set_registered_model_alias("m", champ.CHAMPION, "1")
    with pytest.raises(
        RegistryError, match=r"\(version 1\) has no weights-only generator file .*generator\.pt"
    ):
        champ.load_champion_generator(client, "m")


# -- `ugan run`: the same check after its pipeline -----------------------------------------------


@pytest.fixture
def ran_project(client, tmp_path, monkeypatch):
    """A project whose pipeline "ran": scores and losses in the workspace, the train runs in the
    store, `dvc repro` replaced by a stand-in that records its command and succeeds."""
    project = tmp_path / "project"
    for key, fid in (("a", 30.0), ("b", 25.0)):
        _metrics(project, key, final_fid=fid, best_fid=fid - 1)
        (project / "runs" / key).mkdir(parents=True)
        (project / "runs" / key / "losses.csv").write_text(f"losses of {key}\n")
        _train_run(client, tmp_path / "mlflow", key, f"losses of {key}\n")
    (project / "params.yaml").write_text("runs:\n  a: {init: random}\n  b: {init: vae}\n")
    calls = []
    monkeypatch.setattr(
        "ugan.pipeline.processes.call", lambda cmd, env=None: calls.append(cmd) or 0
    )
    monkeypatch.chdir(project)
    monkeypatch.delenv("UGAN_PIPELINE_ID", raising=False)
    monkeypatch.delenv("UGAN_PARENT_RUN_ID", raising=False)
    return project, calls


def _ugan_run(client, capsys, *argv: str) -> tuple[int, str, str, mlflow.entities.Run]:
    from ugan.pipeline.cli import main

    code = main(["run", "--jobs", "1", *argv])  # one `dvc repro` (the stand-in records it)
    out, err = capsys.readouterr()
    parents = client.search_runs(
        [_experiment(client)], "tags.`ugan.stage` = 'pipeline'", order_by=["start_time DESC"]
    )
    return code, out, err, parents[0]


def test_ugan_run_crowns_the_best_generator_by_the_nightly_rule(client, ran_project, capsys):
    _, calls = ran_project
    code, out, _, parent = _ugan_run(client, capsys)
    assert code == 0 and calls == [["dvc", "repro"]]
    assert "champion: b (FID 25.000, v1) is the first champion of ugan-generator" in out
    assert "/runs?workflowType=machine_learning" in out  # the experiment's runs in MLflow's UI
    champion = client.get_model_version_by_alias(champ.DEFAULT_MODEL, champ.CHAMPION)
    assert client.get_run(champion.run_id).info.run_name == "train_gan@b"
    assert float(champion.tags[champ.FID_TAG]) == 25.0  # the final generator's, not best_fid
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ugan.champion.decision"] == "first"
    assert parent.data.metrics["candidate_fid"] == 25.0

    code, out, _, parent = _ugan_run(client, capsys)  # nothing changed: the same champion
    assert code == 0 and "is already the champion" in out
    assert parent.data.tags["ugan.champion.decision"] == "unchanged"


@pytest.mark.parametrize("case", ["targets", "log_models false"])
def test_ugan_run_skips_the_champion_with_a_note(client, ran_project, capsys, case):
    project, calls = ran_project
    argv = ["train_gan@a"] if case == "targets" else []
    if case == "log_models false":
        with open(project / "params.yaml", "a") as params:
            params.write("tracking: {log_models: false}\n")
    code, out, _, parent = _ugan_run(client, capsys, *argv)
    assert code == 0 and calls == [["dvc", "repro", *argv]]
    note = {"targets": "targets train_gan@a", "log_models false": "tracking.log_models is false"}
    assert f"champion: not checked ({note[case]}" in out
    assert not client.search_registered_models()
    assert parent.info.status == "FINISHED" and "ugan.champion.decision" not in parent.data.tags


def test_ugan_run_fails_when_no_generator_can_be_registered(client, ran_project, capsys):
    project, _ = ran_project
    (project / "runs" / "b" / "losses.csv").write_text("not what was logged\n")
    code, _, err, parent = _ugan_run(client, capsys)
    assert code == 1 and "error: champion: none of the last" in err and "Traceback" not in err
    assert parent.info.status == "FAILED"
