"""The champion generator in the MLflow model registry.

After a pipeline execution, its *candidate* is the run of `runs:` whose final generator scores
the lowest FID (`final.fid` in `evaluation/<run>/metrics.json`). The final generator is the one
`train_gan@<run>` logs as the MLflow model `generator`, so the score compared is the score of the
model registered (`best_fid` may belong to an earlier checkpoint that is not in the registry).
A run trained with `gan.ema` logs its weight average as that model: its score is then the
average's (`ema.final.fid`), not the raw generator's.

The candidate becomes a version of the registered model (tags `ugan.fid`, `ugan.run_key`); the
alias `champion` moves to it only when its FID is lower than the champion's recorded `ugan.fid`.
The decision and both scores are written on the pipeline's parent run.

Loading the champion: `load_champion_generator` rebuilds it from the weights-only generator file
(`generator/generator.pt`, a `ugan.nets.generator_file` payload) logged beside the MLflow model,
read with `torch.load(weights_only=True)`: a tampered registry or artifact store can make it fail,
never run code. `mlflow.pytorch.load_model` unpickles what the version holds (MLflow allows
pickle deserialization by default, and reads even a pt2 archive's weights without torch's
weights-only guard), so it is only as safe as everyone who can write to the registry.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow.entities import Metric, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

DEFAULT_MODEL = "ugan-generator"
CHAMPION = "champion"
FID_TAG = "ugan.fid"
MODEL_ARTIFACT = "generator"  # where train_gan logs the final generator
# How many recent train_gan runs of one key are searched for the one behind the workspace.
SEARCH_DEPTH = 50


class RegistryError(RuntimeError):
    """The candidate or the champion cannot be determined; the message says what is missing."""


@dataclass(frozen=True)
class Candidate:
    run_key: str
    fid: float  # FID of the final generator, the one logged as the MLflow model
    step: int
    train_run_id: str | None = None  # the train_gan@<run_key> MLflow run that logged it


@dataclass(frozen=True)
class Decision:
    model: str
    action: str  # first | promoted | kept | unchanged
    candidate: Candidate
    candidate_version: str
    champion_version: str | None  # the champion the candidate was compared with
    champion_fid: float | None

    @property
    def champion_after(self) -> str:
        moved = self.action in ("first", "promoted")
        return self.candidate_version if moved else str(self.champion_version)

    def summary(self) -> str:
        new = f"{self.candidate.run_key} (FID {self.candidate.fid:.3f}, v{self.candidate_version})"
        if self.champion_fid is None:
            return f"{new} is the first champion of {self.model}"
        old = f"v{self.champion_version} (FID {self.champion_fid:.3f})"
        return {
            "promoted": f"{new} beats champion {old}: alias '{CHAMPION}' moved",
            "kept": f"{new} does not beat champion {old}: alias '{CHAMPION}' kept",
            "unchanged": f"{new} is already the champion: nothing to compare",
        }[self.action]

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "champion_after": self.champion_after,
            "summary": self.summary(),
        }


def is_better(candidate_fid: float, champion_fid: float) -> bool:
    """Lower FID is better; a tie keeps the champion."""
    return candidate_fid < champion_fid


# -- the candidate ----------------------------------------------------------------------------


def read_final_fid(metrics_file: Path) -> tuple[float, int]:
    """(FID, step) of the final generator logged as the model: the EMA one's when scored."""
    try:
        metrics = json.loads(metrics_file.read_text())
        final = metrics["ema"]["final"] if "ema" in metrics else metrics["final"]
        fid, step = float(final["fid"]), int(final["step"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RegistryError(
            f"{metrics_file}: no final FID ({type(error).__name__}: {error}); run evaluate first"
        ) from error
    if not math.isfinite(fid):
        raise RegistryError(f"{metrics_file}: final FID is {fid}")
    return fid, step


def pick_candidate(project: Path, run_keys: list[str]) -> Candidate:
    """The run of `run_keys` whose final generator has the lowest FID."""
    if not run_keys:
        raise RegistryError("params.yaml `runs:` is empty: no generator to compare")
    scored = []
    for key in run_keys:
        fid, step = read_final_fid(project / "evaluation" / key / "metrics.json")
        scored.append(Candidate(key, fid, step))
    return min(scored, key=lambda c: c.fid)


def find_train_run(client: MlflowClient, experiment: str, run_key: str, losses_csv: Path) -> str:
    """The FINISHED `train_gan@<run_key>` run that produced the workspace's outputs: the newest
    one whose logged `losses.csv` equals `losses_csv`. ("Newest" alone could name the wrong run:
    DVC restores older outputs from its run cache without running the stage.)"""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise RegistryError(f"no MLflow experiment {experiment!r} in {client.tracking_uri}")
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=(
            f"tags.`ugan.stage` = 'train_gan' and tags.`ugan.run_key` = '{run_key}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=SEARCH_DEPTH,
    )
    expected = losses_csv.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            logged = {a.path for a in client.list_artifacts(run.info.run_id)}
            if not {"losses.csv", MODEL_ARTIFACT} <= logged:
                continue
            copy = client.download_artifacts(run.info.run_id, "losses.csv", tmp)
            if Path(copy).read_bytes() == expected:
                return run.info.run_id
    raise RegistryError(
        f"none of the last {len(runs)} finished train_gan@{run_key} runs in experiment "
        f"{experiment!r} logged both `{MODEL_ARTIFACT}` and a losses.csv equal to {losses_csv} "
        "(is tracking.log_models false?)"
    )


# -- the registry -----------------------------------------------------------------------------


def champion(client: MlflowClient, model: str) -> tuple[ModelVersion, float] | None:
    """The version behind alias `champion` and its recorded FID; None if there is none."""
    try:
        version = client.get_model_version_by_alias(model, CHAMPION)
    except MlflowException:  # no such model, or no such alias
        return None
    if FID_TAG not in version.tags:
        raise RegistryError(
            f"champion of {model!r} (version {version.version}) has no {FID_TAG!r} tag: set it "
            f"to the version's FID (MlflowClient.set_model_version_tag)"
        )
    return version, float(version.tags[FID_TAG])


def register(client: MlflowClient, model: str, candidate: Candidate) -> ModelVersion:
    """The model version of `candidate`'s generator: the existing one for its train run, or a
    new one tagged with its FID."""
    try:
        client.get_registered_model(model)
    except MlflowException:
        client.create_registered_model(model, description="ugan generators; alias champion")
    for version in client.search_model_versions(
        f"name = '{model}' and run_id = '{candidate.train_run_id}'"
    ):
        return version
    tags = {FID_TAG: repr(candidate.fid), "ugan.run_key": candidate.run_key}
    tags["ugan.fid_step"] = str(candidate.step)
    return client.create_model_version(
        model,
        f"runs:/{candidate.train_run_id}/{MODEL_ARTIFACT}",
        candidate.train_run_id,
        tags=tags,
    )


def decide(client: MlflowClient, model: str, candidate: Candidate) -> Decision:
    """Register the candidate and move alias `champion` to it only when it is better."""
    current = champion(client, model)
    version = register(client, model, candidate)
    if current is None:
        action, champion_version, champion_fid = "first", None, None
    else:
        champion_version, champion_fid = current[0].version, current[1]
        if str(champion_version) == str(version.version):
            action = "unchanged"
        elif is_better(candidate.fid, champion_fid):
            action = "promoted"
        else:
            action = "kept"
    if action in ("first", "promoted"):
        client.set_registered_model_alias(model, CHAMPION, version.version)
    return Decision(
        model,
        action,
        candidate,
        str(version.version),
        None if champion_version is None else str(champion_version),
        champion_fid,
    )


def record(client: MlflowClient, run_id: str, decision: Decision) -> None:
    """The decision and both scores, as tags and metrics of the pipeline's parent run."""
    metrics = {"candidate_fid": decision.candidate.fid}
    if decision.champion_fid is not None:
        metrics["champion_fid"] = decision.champion_fid
    tags = {
        "ugan.champion.decision": decision.action,
        "ugan.champion.model": decision.model,
        "ugan.champion.version": decision.champion_after,
        "ugan.candidate.run_key": decision.candidate.run_key,
        "ugan.candidate.version": decision.candidate_version,
        "ugan.champion.summary": decision.summary(),
    }
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )


def crown(
    client: MlflowClient,
    model: str,
    project: Path,
    run_keys: list[str],
    experiment: str,
) -> Decision:
    """The whole check after a pipeline execution: candidate → its run → registry decision."""
    best = pick_candidate(project, run_keys)
    run_id = find_train_run(
        client, experiment, best.run_key, project / "runs" / best.run_key / "losses.csv"
    )
    return decide(client, model, Candidate(best.run_key, best.fid, best.step, run_id))


def check(
    uri: str,
    model: str,
    project: str | Path,
    run_keys: list[str],
    experiment: str,
    parent: str | None = None,
) -> tuple[Decision, str]:
    """What `ugan run` does after its pipeline, with the nightly flow's rule: `crown`, the
    decision `record`ed on the pipeline's parent run when there is one. Returns the decision
    and the MLflow UI page of the experiment's runs."""
    from ugan.tracking.store import experiment_id, runs_url

    client = MlflowClient(uri)
    decision = crown(client, model, Path(project), run_keys, experiment)
    if parent:
        record(client, parent, decision)
    return decision, runs_url(experiment_id(client, experiment))


# -- loading the champion, without running code -----------------------------------------------


def load_champion_generator(
    client_or_uri: MlflowClient | str | None = None,
    model: str = DEFAULT_MODEL,
    device: str = "cpu",
):
    """The champion generator of `model` (an nn.Module: noise (N, latent_dim) → images in
    [-1, 1]; `.prior` names its noise), rebuilt from the weights-only generator file logged in
    the version's artifact folder. Downloads that one file, never the pickled or exported model;
    a file that would import or call anything is refused (CheckpointError) before it runs."""
    import mlflow.artifacts

    from ugan.nets.generator_file import GENERATOR_FILE, load_generator

    client = (
        client_or_uri if isinstance(client_or_uri, MlflowClient) else MlflowClient(client_or_uri)
    )
    try:
        version = client.get_model_version_by_alias(model, CHAMPION)
    except MlflowException as error:
        raise RegistryError(
            f"no champion of {model!r} in {client.tracking_uri} (no such model or no alias "
            f"{CHAMPION!r}): run the pipeline flow first"
        ) from error
    folder = client.get_model_version_download_uri(model, version.version).rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{folder}/{GENERATOR_FILE}",
                dst_path=tmp,
                tracking_uri=client.tracking_uri,
            )
        except (MlflowException, OSError) as error:
            raise RegistryError(
                f"champion of {model!r} (version {version.version}) has no weights-only "
                f"generator file {folder}/{GENERATOR_FILE}: its train_gan run logged only the "
                "MLflow model; retrain it with a version of ugan that logs the file"
            ) from error
        return load_generator(local, device)
