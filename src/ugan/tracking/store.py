"""The MLflow store the stages log to: where it is, getting it ready, the experiment.

The default store is a sqlite file at the project root, shared by stage processes that run at
the same time (DVC's parallel stages, queue workers): it is put in WAL mode with a busy timeout,
and its schema is created by one process at a time under a file lock. An HTTP store must
answer its health check within seconds; when it does not, the callers spool (`tracking.spool`).
"""

from __future__ import annotations

import os
import sqlite3
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ugan.core.locks import exclusive

if TYPE_CHECKING:  # MLflow is imported where it is used: it costs a stage ~2 s of start-up
    from mlflow.tracking import MlflowClient

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Fail over to the local spool within seconds, not after MLflow's default minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

# The experiment is created as a model-training experiment (MLflow's tag for it). The tag alone
# does not make MLflow 3.17's UI open it on its runs: that UI decides by a switch in its
# sidebar (GenAI | Model training; GenAI until a browser picks the other, then remembered), and
# a URL's `workflowType=machine_learning` overrides the switch. So every link ugan prints to
# an experiment carries that parameter (`runs_url`); tests/test_ui_browser.py checks the page.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
UI = "http://127.0.0.1:5000"  # where `ugan ui` serves the MLflow UI by default


def tracking_uri(root: str | Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI` if set, else a sqlite store `mlflow.db` at the project root.

    The path is made absolute so stages run from another folder still log to the same store.
    The project root is `root`, else `DVC_ROOT` (which DVC sets to the *project's* root for
    stages of queued experiments, whose workspaces are temporary copies under .dvc/tmp/exps),
    else the working directory."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    base = Path(root or os.environ.get("DVC_ROOT") or Path.cwd())
    return f"sqlite:///{base.resolve() / 'mlflow.db'}"


def _has_schema(path: Path) -> bool:
    if not path.is_file():
        return False
    with sqlite3.connect(path, timeout=30) as connection:
        found = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone()
    return found is not None


def prepare_store(uri: str) -> None:
    """Make the store fit for concurrent stage processes: sqlite in WAL mode (readers never
    block the writer) with a busy timeout; an HTTP server must answer /health within 5 s."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if _has_schema(path):
            return
        # A new store: MLflow's schema migration is not safe to run from several processes at
        # once, so the first stage to get the lock creates it and the others wait.
        with exclusive(path.with_name(path.name + ".lock")):
            if not _has_schema(path):
                with sqlite3.connect(path, timeout=30) as connection:
                    connection.execute("PRAGMA journal_mode=WAL")
                from mlflow.tracking import MlflowClient

                MlflowClient(uri).search_experiments(max_results=1)  # runs the migrations
    elif uri.startswith(("http://", "https://")):
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
            pass


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created if missing (a concurrent creator wins the race),
    tagged `mlflow.experimentKind = custom_model_development` unless it already has a kind."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:
            experiment = client.get_experiment_by_name(name)
    found = experiment.experiment_id
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        try:
            client.set_experiment_tag(found, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        except MlflowException:  # a concurrent stage tagged it first (sqlite: UNIQUE failed)
            if EXPERIMENT_KIND_TAG not in client.get_experiment(found).tags:
                raise
    return found


def runs_url(experiment: str, ui: str = UI) -> str:
    """The MLflow UI page of `experiment`'s runs (its id), in the model-training view."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment}/runs?workflowType=machine_learning"
