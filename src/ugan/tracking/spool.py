"""A local spool for tracking data while the MLflow store cannot be reached.

Training must not stop because the tracking server is down or the sqlite file is locked: the
stage's run writes what it would have logged into `.ugan/spool/<run>/events.jsonl` (artifacts
copied beside it) and the spool is replayed into the store at the end of the stage, or later by
`ugan sync`.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from ugan.core.paths import SPOOL_ROOT
from ugan.tracking.store import experiment_id


class Spool:
    def __init__(self, name: str, root: Path = SPOOL_ROOT):
        self.dir = Path(root) / f"{name.replace('@', '_')}-{uuid.uuid4().hex[:8]}"
        (self.dir / "artifacts").mkdir(parents=True, exist_ok=True)
        self._events = open(self.dir / "events.jsonl", "a", encoding="utf-8")

    def write(self, op: str, **payload: Any) -> None:
        # One line per event, flushed: a crash loses at most the line being written.
        self._events.write(json.dumps({"op": op, **payload}) + "\n")
        self._events.flush()

    def add_artifact(self, path: str | Path, artifact_path: str | None) -> None:
        source = Path(path)
        target = self.dir / "artifacts" / uuid.uuid4().hex[:8] / source.name
        target.parent.mkdir(parents=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        self.write("artifact", path=str(target.relative_to(self.dir)), artifact_path=artifact_path)

    def close(self) -> None:
        self._events.close()


def _events(spool_dir: Path) -> list[dict]:
    lines = (spool_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line from a crash
            break
    return events


def replay(spool_dir: Path, client: MlflowClient) -> str:
    """Send a spool's events to `client`'s store; returns the run id. Removes the spool."""
    run_id = None
    for event in _events(spool_dir):
        op = event["op"]
        if op == "start":
            run_id = event.get("run_id")
            if run_id is None:
                run_id = client.create_run(
                    experiment_id(client, event["experiment"]),
                    tags=event["tags"],
                    run_name=event["tags"]["mlflow.runName"],
                ).info.run_id
                params = [Param(k, v) for k, v in event["params"].items()]
                for start in range(0, len(params), 100):
                    client.log_batch(run_id, params=params[start : start + 100])
        elif op == "metrics":
            metrics = [Metric(k, v, ts, step) for k, v, ts, step in event["metrics"]]
            for start in range(0, len(metrics), 1000):
                client.log_batch(run_id, metrics=metrics[start : start + 1000])
        elif op == "tags":
            for key, value in event["tags"].items():
                client.set_tag(run_id, key, value)
        elif op == "artifact":
            source = spool_dir / event["path"]
            if source.is_dir():
                client.log_artifacts(run_id, str(source), event["artifact_path"])
            else:
                client.log_artifact(run_id, str(source), event["artifact_path"])
        elif op == "end":
            client.set_terminated(run_id, event["status"])
    if run_id is None:
        raise ValueError(f"spool {spool_dir} has no start event")
    shutil.rmtree(spool_dir)
    return run_id


def pending(root: Path = SPOOL_ROOT) -> list[Path]:
    return sorted(p for p in Path(root).glob("*") if (p / "events.jsonl").is_file())
