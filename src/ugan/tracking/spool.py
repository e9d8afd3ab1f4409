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
from typing import TYPE_CHECKING, Any

from ugan.core.errors import UserError
from ugan.core.paths import SPOOL_ROOT
from ugan.tracking.store import experiment_id

if TYPE_CHECKING:  # imported where used (stage start-up: tracking.store)
    from mlflow.tracking import MlflowClient


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


SPOOL_TAG = "ugan.spool"  # names the spool a replayed run came from: a second replay reuses it


class BrokenSpoolError(UserError):
    """A spool whose events cannot be replayed (empty, or corrupt before its last line)."""


def _events(spool_dir: Path) -> list[dict]:
    path = spool_dir / "events.jsonl"
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    events = []
    for number, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # a torn last line from a crash: the rest is whole
                break
            raise BrokenSpoolError(f"{path}: line {number} is not a JSON event") from None
        if not isinstance(event, dict) or event.get("op") not in OPS:
            raise BrokenSpoolError(f"{path}: line {number} is not a spool event")
        events.append(event)
    if not events or events[0]["op"] != "start":
        raise BrokenSpoolError(f"{path}: no start event, so no run to send it to")
    return events


def _start(client: MlflowClient, spool_dir: Path, event: dict, run_id: str | None) -> str:
    """The run the spool's data goes to: the live run it began in, the run an earlier replay
    of this spool created (found by its `ugan.spool` tag), or a new one."""
    if event.get("run_id"):
        return event["run_id"]
    experiment = experiment_id(client, event["experiment"])
    earlier = client.search_runs(
        [experiment], filter_string=f"tags.`{SPOOL_TAG}` = '{spool_dir.name}'", max_results=1
    )
    if earlier:
        return earlier[0].info.run_id
    tags = {**event["tags"], SPOOL_TAG: spool_dir.name}
    return client.create_run(experiment, tags=tags, run_name=tags["mlflow.runName"]).info.run_id


def _params(client: MlflowClient, run_id: str, event: dict) -> None:
    from mlflow.entities import Param

    # A spool begun mid-run (the store went away after the run started) carries no params.
    params = [Param(k, v) for k, v in event.get("params", {}).items()]
    for start in range(0, len(params), 100):  # logging a param again with its value is a no-op
        client.log_batch(run_id, params=params[start : start + 100])


def _metrics(client: MlflowClient, run_id: str, event: dict) -> None:
    from mlflow.entities import Metric

    # The store keeps one row per (key, value, timestamp, step): a replay twice is harmless.
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in event["metrics"]]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def _tags(client: MlflowClient, run_id: str, event: dict) -> None:
    for key, value in event["tags"].items():
        client.set_tag(run_id, key, value)


def _artifact(client: MlflowClient, run_id: str, event: dict, spool_dir: Path) -> None:
    source = spool_dir / event["path"]
    if source.is_dir():
        client.log_artifacts(run_id, str(source), event["artifact_path"])
    else:
        client.log_artifact(run_id, str(source), event["artifact_path"])


# op → what replaying it does. Every op is idempotent, so a replay cut short can run again.
OPS = {
    "start": lambda client, run_id, event, spool_dir: _params(client, run_id, event),
    "metrics": lambda client, run_id, event, spool_dir: _metrics(client, run_id, event),
    "tags": lambda client, run_id, event, spool_dir: _tags(client, run_id, event),
    "artifact": _artifact,
    "end": lambda client, run_id, event, spool_dir: client.set_terminated(run_id, event["status"]),
}


def replay(spool_dir: Path, client: MlflowClient) -> str:
    """Send a spool's events to `client`'s store; returns the run id and removes the spool.
    Replaying again after a failure part-way sends to the same run and duplicates nothing."""
    events = _events(spool_dir)
    run_id = None
    for event in events:
        if event["op"] == "start":
            try:
                run_id = _start(client, spool_dir, event, run_id)
            except KeyError as missing:
                raise BrokenSpoolError(f"{spool_dir}: start event lacks {missing}") from None
        OPS[event["op"]](client, run_id, event, spool_dir)
    shutil.rmtree(spool_dir)
    return run_id


def pending(root: Path = SPOOL_ROOT) -> list[Path]:
    return sorted(p for p in Path(root).glob("*") if (p / "events.jsonl").is_file())
