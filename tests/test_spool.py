"""`ugan sync` against a real sqlite MLflow store: a replay cut short by a real fault runs again
into the same run, duplicating nothing, and a broken spool is named and skipped while the
others land."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from ugan.tracking.spool import SPOOL_TAG, Spool


def _spool(root: Path, name: str, artifact: Path) -> Spool:
    spool = Spool(name, root / ".ugan/spool")
    spool.write(
        "start",
        run_id=None,
        experiment="ugan",
        tags={"mlflow.runName": name, "ugan.stage": "train_gan"},
        params={"gan.steps": "3"},
    )
    spool.write(
        "metrics", metrics=[["d_loss", 1.0 / step, 1000 + step, step] for step in (1, 2, 3)]
    )
    spool.add_artifact(artifact, None)
    spool.write("end", status="FINISHED")
    spool.close()
    return spool


def _named(spool: Spool) -> Path:
    """How `ugan sync`, run in the project, names a spool."""
    return Path(".ugan/spool") / spool.dir.name


def _sync(root: Path, store: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ugan.pipeline.cli", "sync"],
        cwd=root,
        env=dict(os.environ, MLFLOW_TRACKING_URI=store),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def store(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _runs(store: str) -> list:
    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("ugan")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_a_sync_cut_short_resumes_into_the_same_run_without_duplicates(tmp_path, store):
    artifact = tmp_path / "losses.csv"
    artifact.write_text("step,d_loss\n1,1.0\n")
    spool = _spool(tmp_path, "train_gan@dcgan", artifact)
    (copied,) = (spool.dir / "artifacts").rglob("losses.csv")
    hidden = copied.rename(copied.with_suffix(".away"))  # a real fault after the run exists

    first = _sync(tmp_path, store)
    assert first.returncode == 1 and f"kept {_named(spool)}" in first.stderr, first.stderr[-2000:]
    assert spool.dir.is_dir(), "a spool that was not fully sent must stay"
    assert len(_runs(store)) == 1

    hidden.rename(copied)
    second = _sync(tmp_path, store)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "1 of 1 spooled run(s) sent" in second.stdout
    (run,) = _runs(store)  # the run the first sync created, not a second one
    assert run.data.tags[SPOOL_TAG] == spool.dir.name and run.info.status == "FINISHED"
    client = mlflow.MlflowClient(store)
    history = client.get_metric_history(run.info.run_id, "d_loss")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["losses.csv"]
    assert not spool.dir.exists()


@pytest.mark.parametrize("damage", ["empty", "torn first line", "garbage in the middle"])
def test_a_broken_spool_is_named_and_skipped_and_the_others_land(tmp_path, store, damage):
    artifact = tmp_path / "losses.csv"
    artifact.write_text("step,d_loss\n1,1.0\n")
    good = _spool(tmp_path, "train_gan@a", artifact)
    broken = _spool(tmp_path, "train_gan@b", artifact)
    events = broken.dir / "events.jsonl"
    lines = events.read_text().splitlines(keepends=True)
    events.write_text(
        {
            "empty": "",
            "torn first line": lines[0][:25],
            "garbage in the middle": lines[0] + "{not json\n" + "".join(lines[1:]),
        }[damage]
    )

    result = _sync(tmp_path, store)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"skipped {_named(broken)}: {_named(broken)}/events.jsonl:" in result.stderr
    assert "1 of 2 spooled run(s) sent" in result.stdout
    assert [r.data.tags[SPOOL_TAG] for r in _runs(store)] == [good.dir.name]
    assert broken.dir.is_dir() and not good.dir.exists()
