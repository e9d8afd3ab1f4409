"""The flow's tasks without a server: which stage failures are retried, what a stage's outcome
was by DVC's words, and the MLflow parent run that groups one pipeline execution's stages."""

from __future__ import annotations

import os

import mlflow
import pytest

from ugan.pipeline.flows import (
    StageError,
    TransientStageError,
    classify_failure,
    is_transient,
    outcome,
)
from ugan.tracking.pipeline_run import (
    PARENT_ENV,
    PIPELINE_ENV,
    close_pipeline_run,
    open_pipeline_run,
)
from ugan.tracking.stage_run import StageRun

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
