"""The MLflow run of one stage execution: `StageRun`.

Each stage execution is one MLflow run. Runs carry the stage, the run key, the git commit and the
pipeline id (`tracking.pipeline_run`), hang under the pipeline's parent run, and log their params
with the keys of params.yaml. Metrics are buffered and sent in batches (one HTTP/SQL round trip
per few hundred values instead of one per value). When the store cannot be reached the run goes
on into a local spool (`tracking.spool`) that is replayed at the end of the stage or by
`ugan sync`.

The store is connected to in a background thread begun on entering the run: importing MLflow
and opening its store take ~2 s of a stage's start, and the stage's work (building nets, the
first training steps) need not wait for them. Metrics and tags are buffered meanwhile; the
first call that needs the run (a flush, an artifact, its id) waits for the connection, and a
failed connection turns the run offline there, in the stage's own thread.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ugan.core.paths import SPOOL_ROOT
from ugan.tracking.pipeline_run import (
    PARENT_ENV,
    find_or_create_pipeline_run,
    git_commit,
    pipeline_id,
)
from ugan.tracking.spool import Spool, replay
from ugan.tracking.store import experiment_id, prepare_store, tracking_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

FLUSH_EVERY = 500
MAX_PARAM_LENGTH = 6000


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

    If the store cannot be reached (at the start or at any point later), the run goes offline:
    everything is written to a local spool with a warning, work goes on, and the spool is
    replayed at the end of the stage or by `ugan sync`.
    """

    def __init__(
        self,
        stage: str,
        params: Mapping[str, Any],
        *,
        run_key: str | None = None,
        experiment: str = "ugan",
        log_models: bool = True,
        spool_root: Path = SPOOL_ROOT,
    ):
        self.stage = stage
        self.run_key = run_key
        self.params = params
        self.experiment = experiment
        self.log_models = log_models
        self.spool_root = spool_root
        self._client: MlflowClient | None = None
        self._run_id: str | None = None
        self.spool: Spool | None = None
        self._buffer: list[tuple[str, float, int, int]] = []  # (key, value, ms, step)
        self._pending_tags: dict[str, str] = {}  # set before the store was connected
        self._connecting: threading.Thread | None = None
        self._connect_error: BaseException | None = None
        self._start_data: dict[str, dict[str, str]] = {}
        self._previous_sigterm: Any = None
        # The parent run this stage created or found itself (no orchestrator passed one): the
        # stage then also ends it, so its end time is that of the pipeline's latest stage.
        self._own_parent: str | None = None

    @property
    def name(self) -> str:
        return f"{self.stage}@{self.run_key}" if self.run_key else self.stage

    @property
    def client(self) -> MlflowClient | None:
        self._ready()
        return self._client

    @property
    def run_id(self) -> str | None:
        self._ready()
        return self._run_id

    @property
    def offline(self) -> bool:
        self._ready()
        return self.spool is not None

    def _tags(self) -> dict[str, str]:
        tags = {
            "ugan.stage": self.stage,
            "ugan.pipeline_id": pipeline_id(),
            "mlflow.runName": self.name,
        }
        if self.run_key:
            tags["ugan.run_key"] = self.run_key
        if os.environ.get(PARENT_ENV):
            tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        return tags

    def _start_live(self, uri: str, tags: dict[str, str], params: dict[str, str]) -> None:
        import mlflow
        from mlflow.entities import Param

        prepare_store(uri)
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        experiment = experiment_id(client, self.experiment)
        if "mlflow.parentRunId" not in tags:
            self._own_parent = find_or_create_pipeline_run(
                client, experiment, tags["ugan.pipeline_id"]
            )
            tags = {**tags, "mlflow.parentRunId": self._own_parent}
        run = client.create_run(experiment, tags=tags, run_name=self.name)
        self._client, self._run_id = client, run.info.run_id
        batch = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(batch), 100):
            client.log_batch(self._run_id, params=batch[start : start + 100])

    def _connect(self, uri: str) -> None:
        """The background thread: start the live run, or keep why it could not."""
        try:
            self._start_live(uri, **self._start_data)
        except Exception as error:
            self._connect_error = error

    def _ready(self) -> None:
        """Wait for the connection begun in `__enter__`. A failed one turns the run offline
        here, in the stage's thread (its warning and spool belong to the stage), and tags set
        meanwhile are sent."""
        thread = self._connecting
        if thread is None:
            return
        thread.join()
        self._connecting = None  # only once joined: a signal during join() leaves it to wait
        if self._connect_error is not None:
            self._run_id = None
            self._go_offline(self._connect_error, **self._start_data)
        if self._pending_tags:
            tags, self._pending_tags = self._pending_tags, {}
            self.set_tags(tags)

    def _go_offline(self, error: BaseException, **start: Any) -> None:
        self.spool = Spool(self.name, self.spool_root)
        self.spool.write("start", run_id=self._run_id, experiment=self.experiment, **start)
        warnings.warn(
            f"MLflow store {tracking_uri()} unreachable ({type(error).__name__}: {error}); "
            f"training goes on, tracking data kept in {self.spool.dir}",
            stacklevel=3,
        )

    def _guarded(self, live, offline) -> None:
        """Run `live()` against the store; on failure switch to the spool and run `offline()`."""
        self._ready()
        if not self.offline:
            try:
                live()
                return
            except Exception as error:  # the store went away mid-run
                self._go_offline(error)
        offline()

    def __enter__(self) -> StageRun:
        self._start_data = {"tags": self._tags(), "params": flatten(self.params)}
        self._connecting = threading.Thread(
            target=self._connect, args=(tracking_uri(),), name=f"mlflow {self.name}", daemon=True
        )
        self._connecting.start()
        # SIGTERM (dvc/CI cancelling us) unwinds like Ctrl-C, so the run is marked KILLED.
        self._previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        self.flush()  # waits for the connection first
        self._guarded(
            lambda: self._client.set_terminated(self._run_id, status),
            lambda: self.spool.write("end", status=status),
        )
        if self._own_parent and not self.offline:
            try:
                self._client.set_terminated(self._own_parent, status)
            except Exception as error:
                warnings.warn(f"parent run not updated ({type(error).__name__})", stacklevel=2)
        if self.offline:
            self._replay_spool()

    def _replay_spool(self) -> None:
        from mlflow.tracking import MlflowClient

        self.spool.close()
        try:
            uri = tracking_uri()
            prepare_store(uri)
            self._run_id = replay(self.spool.dir, MlflowClient(uri))
        except Exception as error:
            warnings.warn(
                f"MLflow store still unreachable ({type(error).__name__}); tracking data stays "
                f"in {self.spool.dir}: run `ugan sync` when the store is back",
                stacklevel=3,
            )

    def mark_interrupted(self, run_id: str | None) -> None:
        """A run left RUNNING by a killed process is marked KILLED when its work is resumed."""
        if not run_id or run_id == self.run_id or self.offline:
            return
        try:
            previous = self._client.get_run(run_id)
        except Exception:  # deleted or from another store: nothing to mend
            return
        if previous.info.status == "RUNNING":
            self._client.set_terminated(run_id, "KILLED")
        self.set_tags({"ugan.resumes_run": run_id})

    # -- metrics --------------------------------------------------------------------------

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        timestamp = int(time.time() * 1000)
        for key, value in metrics.items():
            self._buffer.append((key, float(value), timestamp, step or 0))
        if len(self._buffer) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self._ready()
        if not self._buffer:
            return
        from mlflow.entities import Metric  # loaded by now: _ready() waited for the import

        while self._buffer:
            batch, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self._guarded(
                lambda batch=batch: self._client.log_batch(
                    self._run_id, metrics=[Metric(*m) for m in batch]
                ),
                lambda batch=batch: self.spool.write("metrics", metrics=[list(m) for m in batch]),
            )

    # -- artifacts ------------------------------------------------------------------------

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        tags = {key: str(value) for key, value in tags.items()}
        if self._connecting is not None and self._connecting.is_alive():
            self._pending_tags.update(tags)  # sent once connected: the stage need not wait
            return
        self._guarded(
            lambda: [self._client.set_tag(self._run_id, k, v) for k, v in tags.items()],
            lambda: self.spool.write("tags", tags=tags),
        )

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._guarded(
            lambda: self._client.log_artifact(self._run_id, str(path), artifact_path),
            lambda: self.spool.add_artifact(path, artifact_path),
        )

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        self._guarded(
            lambda: self._client.log_artifacts(self._run_id, str(folder), artifact_path),
            lambda: self.spool.add_artifact(folder, artifact_path),
        )

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
