"""A grid's cells as flow runs on a Prefect work pool, with a DVC remote as the shared cache.

Two deployed flows, run by `ugan worker`s (Prefect process workers) on any machine:

- `ugan-grid-upstream` (once per grid): checks out the grid's base commit, writes the grid's
  params.yaml, reproduces the *shared* stages (every upstream stage of `train_gan@*` and
  `evaluate@*`: prepared data, classifier, VAE, DAE, inits), `dvc push`es their outputs, and
  commits params.yaml + dvc.lock as branch `ugan/grids/<grid>` on the shared git remote.
- `ugan-grid-cell` (once per run of the grid): checks out that commit, `dvc pull`s the shared
  stages (so they are trained once for the whole grid), runs its own stages as a DVC experiment
  (`dvc exp run -n <grid>-<run> train_gan@<run> evaluate@<run>`) and pushes it
  (`dvc exp push origin`: the git ref and the outputs). Any clone can then `dvc exp pull origin`
  and `dvc exp show` the whole grid.

Each flow run takes a *slot* of its worker: a clone of the shared git remote under the worker's
folder (`UGAN_WORKDIR`/slot-<i>, i < `UGAN_SLOTS`, the worker's concurrency limit), held with a
file lock; with `UGAN_SLOT_GPUS=1` slot i sees only GPU i. A slot is reset at the start of every
flow run (a run killed with its machine leaves nothing that matters: the DVC cache stays).

The stages log to `MLFLOW_TRACKING_URI` (the shared tracking server) under the grid's pipeline id
and parent run; the stages run the commit's own code (`PYTHONPATH=<slot>/src`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from ugan.core.runtime import JOBS_ENV
from ugan.pipeline.dvc_plan import cell_stages, shared_stages
from ugan.pipeline.flows import _tail, stage_env

UPSTREAM_FLOW = "ugan-grid-upstream"
CELL_FLOW = "ugan-grid-cell"
WORKDIR_ENV = "UGAN_WORKDIR"
SLOTS_ENV = "UGAN_SLOTS"
SLOT_GPUS_ENV = "UGAN_SLOT_GPUS"
GRID_BRANCH = "ugan/grids/{grid}"
FLOW_RETRIES = 2  # in the flow's own process; a run whose machine is lost: grids.wait
SUMMARY_KEY = "ugan-cell"  # description of the artifact that holds a flow run's summary
RAN = re.compile(r"Running stage '(?P<stage>[^']+)'")


class CellError(RuntimeError):
    """A git or DVC command of a cell failed; the message holds its output's tail."""


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode:
        raise CellError(f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n{_tail(output)}")
    return output


def dvc(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd, env)


def ran_stages(output: str) -> list[str]:
    return sorted({m["stage"] for m in RAN.finditer(output)})


# -- the worker's slots -----------------------------------------------------------------------


@contextlib.contextmanager
def slot(poll: float = 2.0) -> Iterator[tuple[Path, int]]:
    """A free workspace of this worker, held until the block ends (a file lock: it dies with
    the process, so a killed flow run frees its slot)."""
    workdir = Path(os.environ.get(WORKDIR_ENV) or Path.cwd()).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    count = max(1, int(os.environ.get(SLOTS_ENV, "1")))
    while True:
        for index in range(count):
            lock = open(workdir / f"slot-{index}.lock", "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            try:
                yield workdir / f"slot-{index}", index
                return
            finally:
                lock.close()
        time.sleep(poll)


def checkout(path: Path, repo: str, commit: str) -> None:
    """`path` becomes a clean checkout of `commit` from `repo`; its DVC cache is kept."""
    if not (path / ".git").is_dir():
        run(["git", "clone", "--quiet", "--no-checkout", repo, str(path)], path.parent)
    run(["git", "remote", "set-url", "origin", repo], path)
    run(["git", "fetch", "--quiet", "--force", "origin", "+refs/heads/*:refs/remotes/origin/*"],
        path)  # fmt: skip
    run(["git", "checkout", "--quiet", "--force", "--detach", commit], path)
    keep = ("/.dvc/cache", "/.dvc/config.local")
    run(["git", "clean", "-qfdx", *(f"--exclude={k}" for k in keep)], path)


def _env(path: Path, index: int, extra: dict[str, str]) -> dict[str, str]:
    env = stage_env(extra)
    env["PYTHONPATH"] = str(path / "src")  # the commit's code runs (and is what DVC hashes)
    env.setdefault(JOBS_ENV, os.environ.get(SLOTS_ENV, "1"))
    if os.environ.get(SLOT_GPUS_ENV) == "1":
        env["CUDA_VISIBLE_DEVICES"] = str(index)
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env.setdefault(key, "ugan-worker")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env.setdefault(key, f"ugan-worker@{socket.gethostname()}")
    return env


def _mark(path: Path, what: dict[str, Any]) -> None:
    """What this slot is doing, for people (and tests) looking at a worker's machine."""
    marker = path / ".ugan" / "cell.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({**what, "flow_run": str(flow_run.get_id()), "pid": os.getpid()}))


def publish(summary: dict[str, Any]) -> dict[str, Any]:
    """A flow's summary as a Prefect artifact of its run: the Prefect server keeps it, so the
    machine that sent the grid reads it (a flow result would stay on the worker's disk)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        f"```json\n{json.dumps(summary, indent=2)}\n```", description=SUMMARY_KEY
    )
    return summary


def _worker() -> str:
    return os.environ.get("UGAN_WORKER_NAME") or socket.gethostname()


# -- the flows --------------------------------------------------------------------------------


@flow(
    name=UPSTREAM_FLOW,
    retries=FLOW_RETRIES,
    retry_delay_seconds=5,
    persist_result=False,  # results would sit on the worker's disk: see `publish`
)
def grid_upstream(
    repo: str, commit: str, grid: str, params_text: str, env: dict[str, str]
) -> dict[str, Any]:
    """The grid's shared stages, once: reproduce, `dvc push`, commit as `ugan/grids/<grid>`."""
    logger = get_run_logger()
    with slot() as (path, index):
        started = time.monotonic()
        checkout(path, repo, commit)
        _mark(path, {"grid": grid, "cell": "upstream"})
        full_env = _env(path, index, env)
        (path / "params.yaml").write_text(params_text)
        stages = shared_stages(path)
        logger.info("%s: shared stages %s on %s", grid, ", ".join(stages), _worker())
        with contextlib.suppress(CellError):  # a base whose shared stages were pushed: no rerun
            dvc("pull", "--allow-missing", *stages, cwd=path, env=full_env)
        output = dvc("repro", *stages, cwd=path, env=full_env)
        dvc("push", *stages, cwd=path, env=full_env)
        run(["git", "add", "-A"], path, full_env)
        run(["git", "commit", "--quiet", "--allow-empty", "-m", f"grid {grid}: shared stages"],
            path, full_env)  # fmt: skip
        sha = run(["git", "rev-parse", "HEAD"], path).strip()
        run(["git", "push", "--quiet", "--force", "origin",
             f"HEAD:refs/heads/{GRID_BRANCH.format(grid=grid)}"], path, full_env)  # fmt: skip
        return publish(
            {
                "commit": sha,
                "stages": stages,
                "ran": ran_stages(output),
                "worker": _worker(),
                "seconds": round(time.monotonic() - started, 2),
            }
        )


@flow(
    name=CELL_FLOW,
    flow_run_name="{grid}/{run_key}",
    retries=FLOW_RETRIES,
    retry_delay_seconds=5,
    persist_result=False,  # results would sit on the worker's disk: see `publish`
)
def grid_cell(repo: str, commit: str, grid: str, run_key: str, env: dict[str, str]) -> dict:
    """One run of the grid as a DVC experiment on the shared stages' pulled outputs."""
    logger = get_run_logger()
    with slot() as (path, index):
        times: dict[str, float] = {}
        started = time.monotonic()
        checkout(path, repo, commit)
        _mark(path, {"grid": grid, "cell": run_key})
        full_env = _env(path, index, env)
        shared = shared_stages(path)
        dvc("pull", *shared, cwd=path, env=full_env)
        times["checkout_pull"] = time.monotonic() - started
        name = f"{grid}-{run_key}"
        with contextlib.suppress(CellError):  # an earlier attempt's experiment on this slot
            dvc("exp", "remove", name, cwd=path, env=full_env)
        mark = time.monotonic()
        output = dvc("exp", "run", "-n", name, *cell_stages(run_key), cwd=path, env=full_env)
        times["run"] = time.monotonic() - mark
        mark = time.monotonic()
        dvc("exp", "push", "origin", name, cwd=path, env=full_env)
        times["push"] = time.monotonic() - mark
        ran = ran_stages(output)
        if set(ran) & set(shared):  # the pull did not bring them: say so, loudly
            logger.warning("%s reran shared stages %s", run_key, set(ran) & set(shared))
        metrics = json.loads((path / "evaluation" / run_key / "metrics.json").read_text())
        logger.info(
            "%s on %s: final FID %s; seconds %s", run_key, _worker(),
            metrics["final"].get("fid"), {k: round(v, 1) for k, v in times.items()},
        )  # fmt: skip
        return publish(
            {
                "run_key": run_key,
                "experiment": name,
                "worker": _worker(),
                "slot": index,
                "ran": ran,
                "final": metrics["final"],
                "attempt": flow_run.run_count,
                "seconds": {k: round(v, 2) for k, v in times.items()},
            }
        )
