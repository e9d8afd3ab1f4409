"""Reading `dvc queue status` for the live jobs count `ugan grid` / `ugan queue` keep (the
queue itself runs for real in tests/test_queue.py)."""

from __future__ import annotations

import pytest

from ugan.pipeline import dvc_queue

# As DVC 3 prints it (dvc/commands/queue/status.py: a table, then the workers' line).
STATUS = """\
Task     Name               Created    Status
1a2b3c4  tiny-s0-20261206   12:01 AM   Success
5d6e7f8  tiny-s1-20261206   12:01 AM   Running
9a8b7c6  tiny-s2-20261206   12:01 AM   Queued
0f1e2d3  tiny-s3-20261206   12:01 AM   Failed

Worker status: 1 active, 1 idle
"""


@pytest.mark.parametrize(("jobs", "load"), [(1, 1), (2, 2), (4, 2)])
def test_the_load_is_what_runs_plus_what_a_free_worker_starts_at_once(jobs, load):
    assert dvc_queue.load(STATUS, jobs) == load


def test_an_empty_queue_still_counts_one_job():
    empty = "No experiment tasks in the queue.\n\nWorker status: 0 active, 0 idle\n"
    assert dvc_queue.load(empty, 2) == 1


def test_states_of_the_named_experiments():
    names = ["tiny-s0-20261206", "tiny-s1-20261206", "tiny-s9-20261206"]
    assert dvc_queue.states(STATUS, names) == {
        "tiny-s0-20261206": "Success",
        "tiny-s1-20261206": "Running",
    }


def test_waiting_goes_on_while_a_named_experiment_is_queued_running_or_not_listed_yet():
    assert dvc_queue.active(STATUS, None)
    assert dvc_queue.active(STATUS, ["tiny-s1-20261206"])
    assert dvc_queue.active(STATUS, ["tiny-s9-20261206"])  # not listed yet: queued
    assert not dvc_queue.active(STATUS, ["tiny-s0-20261206", "tiny-s3-20261206"])
    done = STATUS.replace("Running", "Success").replace("Queued", "Success")
    assert not dvc_queue.active(done, None)
