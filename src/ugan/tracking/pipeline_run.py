"""One pipeline execution in MLflow: its id and its parent run.

Every stage run carries a `ugan.pipeline_id` tag shared by all stages of one pipeline execution,
so a user can filter one `dvc repro` in the UI. The stage runs of one pipeline execution hang
under one parent run (`mlflow.parentRunId`): an orchestrator (`ugan run`, the Prefect flow)
creates it up front with `open_pipeline_run` and passes its id in `UGAN_PARENT_RUN_ID`; under a
plain `dvc repro` the first stage creates it and the others find it by pipeline id
(`find_or_create_pipeline_run`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ugan.core.locks import exclusive
from ugan.tracking.store import experiment_id, prepare_store, tracking_uri

if TYPE_CHECKING:  # imported where used (stage start-up: tracking.store)
    from mlflow.tracking import MlflowClient

PIPELINE_ENV = "UGAN_PIPELINE_ID"
PARENT_ENV = "UGAN_PARENT_RUN_ID"
PIPELINE_STAGE = "pipeline"  # the `ugan.stage` tag of a parent run


def _process_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _dvc_ancestor() -> str | None:
    """`dvc-<pid>-<start>` of the nearest `dvc` process above us (the `dvc repro` that runs us)."""
    pid = os.getppid()
    for _ in range(8):
        if pid <= 1:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if any(Path(part.decode(errors="ignore")).name == "dvc" for part in cmdline[:2]):
            return f"dvc-{pid}-{_process_start(pid)}"
        pid = int(status.rsplit(")", 1)[1].split()[1])
    return None


def pipeline_id() -> str:
    """One id per pipeline execution: `UGAN_PIPELINE_ID` if the caller set it (make run, the
    Prefect flow), else the DVC experiment being run (`DVC_EXP_NAME`: one per queued experiment,
    even when one queue worker runs several), else the `dvc repro` process we run under, else a
    fresh id."""
    experiment = os.environ.get("DVC_EXP_NAME")
    return (
        os.environ.get(PIPELINE_ENV)
        or (f"exp-{experiment}" if experiment else None)
        or _dvc_ancestor()
        or f"adhoc-{uuid.uuid4().hex[:12]}"
    )


def git_commit() -> str | None:
    """The commit the pipeline runs at (the `mlflow.source.git.commit` tag), None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _parent_lock(uri: str, pipeline: str) -> Path:
    digest = hashlib.sha1(f"{uri}|{pipeline}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"ugan-parent-{digest}.lock"


def find_or_create_pipeline_run(client: MlflowClient, experiment: str, pipeline: str) -> str:
    """The parent run of pipeline execution `pipeline` (tags `ugan.pipeline_id` = pipeline,
    `ugan.stage` = pipeline, run name `pipeline <id>`), created if it does not exist yet. A file
    lock keeps two processes of one pipeline from both creating it."""
    with exclusive(_parent_lock(client.tracking_uri, pipeline)):
        found = client.search_runs(
            [experiment],
            filter_string=(
                f"tags.`ugan.pipeline_id` = '{pipeline}' and tags.`ugan.stage` = '{PIPELINE_STAGE}'"
            ),
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        name = f"pipeline {pipeline}"
        tags = {"ugan.stage": PIPELINE_STAGE, "ugan.pipeline_id": pipeline, "mlflow.runName": name}
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        return client.create_run(experiment, tags=tags, run_name=name).info.run_id


def open_pipeline_run(pipeline: str, experiment: str, uri: str | None = None) -> str | None:
    """For an orchestrator: find or create the parent run up front, to pass its id to the stage
    processes in `UGAN_PARENT_RUN_ID`. None, with a warning, when the store is unreachable (the
    stages then find or create the parent themselves, or spool)."""
    from mlflow.tracking import MlflowClient

    uri = uri or tracking_uri()
    try:
        prepare_store(uri)
        client = MlflowClient(uri)
        return find_or_create_pipeline_run(client, experiment_id(client, experiment), pipeline)
    except Exception as error:
        warnings.warn(
            f"MLflow store {uri} unreachable ({type(error).__name__}: {error}); "
            "no parent run created up front",
            stacklevel=2,
        )
        return None


def close_pipeline_run(run_id: str, status: str, uri: str | None = None) -> None:
    """Mark the parent run ended with `status` (FINISHED / FAILED / KILLED)."""
    from mlflow.tracking import MlflowClient

    MlflowClient(uri or tracking_uri()).set_terminated(run_id, status)
