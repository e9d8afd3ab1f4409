"""The only module that talks to MLflow.

Each stage execution is one MLflow run. Runs carry the stage, the run key, the git commit and a
`ugan.pipeline_id` tag shared by all stages of one pipeline execution, so a user can filter one
`dvc repro` in the UI. Metrics are buffered and sent in batches (one HTTP/SQL round trip per
few hundred values instead of one per value).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

PIPELINE_ENV = "UGAN_PIPELINE_ID"
FLUSH_EVERY = 500
MAX_PARAM_LENGTH = 6000


def tracking_uri(root: str | Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI` if set, else a sqlite store `mlflow.db` at the project root.

    The path is made absolute so stages run from another folder (DVC experiment workspaces)
    still log to the same store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(Path(root) if root else Path.cwd()).resolve() / 'mlflow.db'}"


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
    Prefect flow), else the `dvc repro` process we run under, else a fresh id."""
    return os.environ.get(PIPELINE_ENV) or _dvc_ancestor() or f"adhoc-{uuid.uuid4().hex[:12]}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{'gan': {'optim': {'lr': 2e-4}}} → {'gan.optim.lr': '0.0002'}: the keys of params.yaml."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


class StageRun:
    """One MLflow run for one stage execution. Use as a context manager:

    with StageRun("train_gan", params, run_key="dcgan") as run:
        run.log_metrics({"d_loss": 0.7}, step=10)
    """

    def __init__(
        self,
        stage: str,
        params: Mapping[str, Any],
        *,
        run_key: str | None = None,
        experiment: str = "ugan",
        log_models: bool = True,
    ):
        self.stage = stage
        self.run_key = run_key
        self.params = params
        self.experiment = experiment
        self.log_models = log_models
        self.client: MlflowClient | None = None
        self.run_id: str | None = None
        self._buffer: list[Metric] = []
        self._previous_sigterm: Any = None

    @property
    def name(self) -> str:
        return f"{self.stage}@{self.run_key}" if self.run_key else self.stage

    def __enter__(self) -> StageRun:
        uri = tracking_uri()
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(uri)
        experiment = self.client.get_experiment_by_name(self.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(self.experiment)
        )
        tags = {
            "ugan.stage": self.stage,
            "ugan.pipeline_id": pipeline_id(),
            "mlflow.runName": self.name,
        }
        if self.run_key:
            tags["ugan.run_key"] = self.run_key
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        run = self.client.create_run(experiment_id, tags=tags, run_name=self.name)
        self.run_id = run.info.run_id
        params = [Param(k, v) for k, v in flatten(self.params).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        # SIGTERM (dvc/CI cancelling us) unwinds like Ctrl-C, so the run is marked KILLED.
        self._previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
        if exc_type is None:
            status = RunStatus.FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED
        try:
            self.flush()
        finally:
            assert self.client is not None and self.run_id is not None
            self.client.set_terminated(self.run_id, RunStatus.to_string(status))

    def mark_interrupted(self, run_id: str | None) -> None:
        """A run left RUNNING by a killed process is marked KILLED when its work is resumed."""
        if not run_id or run_id == self.run_id:
            return
        try:
            previous = self.client.get_run(run_id)
        except Exception:  # deleted or from another store: nothing to mend
            return
        if previous.info.status == "RUNNING":
            self.client.set_terminated(run_id, "KILLED")
        self.set_tags({"ugan.resumes_run": run_id})

    # -- metrics --------------------------------------------------------------------------

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        timestamp = int(time.time() * 1000)
        for key, value in metrics.items():
            self._buffer.append(Metric(key, float(value), timestamp, step or 0))
        if len(self._buffer) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            batch, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    # -- artifacts ------------------------------------------------------------------------

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    def log_torch_model(self, model, name: str, input_example) -> None:
        """Log an nn.Module as an MLflow pytorch model under artifact path `name`.

        Requirements are given explicitly: inferring them costs 6-15 s per call."""
        if not self.log_models:
            return
        import mlflow.pytorch
        import torch

        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / name
            mlflow.pytorch.save_model(
                model.cpu().eval(),
                target,
                input_example=input_example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                serialization_format="pt2",
            )
            self.log_artifacts(target, name)
