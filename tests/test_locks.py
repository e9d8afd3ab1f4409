"""`ugan.core.locks.exclusive`: mutual exclusion across processes, and no lock file left behind
(the parent-run lock used to leave one file per pipeline execution in the temp folder)."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
import traceback
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ugan.core.locks import exclusive
from ugan.tracking.pipeline_run import PIPELINE_STAGE, find_or_create_pipeline_run
from ugan.tracking.store import experiment_id, prepare_store

ROUNDS = 40
WORKERS = 4


def _run_spawned(target, args_of_each: list[tuple]) -> list[int]:
    """Each args tuple run by `target` in its own fresh interpreter (as a stage is); exit codes."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=target, args=args) for args in args_of_each]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return [worker.exitcode for worker in workers]


def test_the_lock_file_is_gone_after_release_also_after_an_error(tmp_path):
    path = tmp_path / "x.lock"
    with exclusive(path):
        assert path.exists()
    assert not path.exists()
    with pytest.raises(RuntimeError), exclusive(path):
        raise RuntimeError("inside")
    assert not path.exists()


def _count(lock: str, counter: str) -> None:
    """A read-wait-write increment: two holders at once lose an update. A failure leaves its
    traceback beside the counter (a child's stderr is lost under pytest's capture)."""
    try:
        for _ in range(ROUNDS):
            with exclusive(lock):
                value = int(Path(counter).read_text())
                time.sleep(0.001)
                Path(counter).write_text(str(value + 1))
    except BaseException:
        Path(f"{counter}.{os.getpid()}.err").write_text(traceback.format_exc())
        raise


def test_holders_exclude_each_other_while_the_file_is_unlinked_and_recreated(tmp_path):
    lock, counter = tmp_path / "c.lock", tmp_path / "count"
    counter.write_text("0")
    # spawned, not forked: a fork of a pytest worker that had run other modules first exited 1
    # in the full suite
    exits = _run_spawned(_count, [(lock, counter)] * WORKERS)
    errors = [p.read_text() for p in tmp_path.glob("count.*.err")]
    assert exits == [0] * WORKERS, errors
    assert int(counter.read_text()) == ROUNDS * WORKERS, "an update was lost: two held the lock"
    assert not lock.exists()


def _parent(uri: str, tmp: str, pipeline: str, out: str) -> None:
    tempfile.tempdir = tmp
    client = MlflowClient(uri)
    run_id = find_or_create_pipeline_run(client, experiment_id(client, "ugan"), pipeline)
    Path(out).write_text(run_id)


def test_concurrent_stages_create_one_parent_run_and_leave_no_lock_file(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_store(uri)
    MlflowClient(uri).create_experiment("ugan")  # untagged: each stage tags it, all at once
    locks = tmp_path / "tmp"
    locks.mkdir()
    outs = [tmp_path / f"parent-{i}" for i in range(3)]
    assert _run_spawned(_parent, [(uri, str(locks), "p-1", str(out)) for out in outs]) == [0, 0, 0]
    assert len({out.read_text() for out in outs}) == 1
    client = MlflowClient(uri)
    parents = client.search_runs(
        [client.get_experiment_by_name("ugan").experiment_id],
        f"tags.`ugan.stage` = '{PIPELINE_STAGE}'",
    )
    assert len(parents) == 1
    assert list(locks.iterdir()) == [], "the parent-run lock was left in the temp folder"
    assert not (tmp_path / "mlflow.db.lock").exists()
