"""The Prefect flow that runs the DVC pipeline, and its nightly deployment.

Prefect does not know the DAG: the stages and their order come from DVC (the plan `dvc repro`
itself follows), and each task runs one stage with `dvc repro --single-item`, so caching stays
DVC's. Prefect adds retries for transient faults, the schedule, and a UI to watch runs. After the
stages, the best generator of this execution is compared with the registry's champion
(`ugan.pipeline.champion`); the decision and both scores go on the pipeline's parent MLflow run
and into
the flow's result.

    prefect server start --host 127.0.0.1          # the API and the Prefect UI
    ugan serve --cron "0 2 * * *"                  # the nightly deployment (blocks)
    ugan trigger                                   # a run now, waiting for its result
"""

from __future__ import annotations

import builtins
import errno
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import flow_run, task_run

from ugan.config.load import load_params
from ugan.core.errors import UserError
from ugan.core.runtime import JOBS_ENV
from ugan.pipeline import champion, side_by_side
from ugan.pipeline.dvc_plan import cell_stages, dvc_stages, shared_stages
from ugan.tracking.pipeline_run import (
    PARENT_ENV,
    PIPELINE_ENV,
    close_pipeline_run,
    open_pipeline_run,
)
from ugan.tracking.store import tracking_uri

FLOW_NAME = "ugan-pipeline"
DEFAULT_DEPLOYMENT = "nightly"
DEFAULT_CRON = "0 2 * * *"  # 02:00 UTC
STAGE_RETRIES = 3
RETRY_DELAYS = [5, 30, 120]  # seconds before the 1st, 2nd, 3rd retry
OUTPUT_TAIL = 40  # lines of a stage's output kept in the flow log


# What `dvc repro` says about a stage → what the flow reports. A stage that did no work is
# "cached" whichever way DVC found its outputs.
OUTCOMES = {
    "ran": re.compile(r"Running stage '(?P<stage>[^']+)'"),
    "cached": re.compile(
        r"Stage '(?P<stage>[^']+)' (?:didn't change, skipping|is cached - skipping run)"
    ),
}


def outcome(stage: str, output: str) -> str:
    for name, pattern in OUTCOMES.items():
        if any(m["stage"] == stage for m in pattern.finditer(output)):
            return name
    raise StageError(f"{stage}: `dvc repro` neither ran nor skipped it:\n{_tail(output)}")


# -- failures: transient or not ---------------------------------------------------------------


class StageError(RuntimeError):
    """A stage failed for a reason a retry cannot fix: a config or data error, a bug."""


class TransientStageError(RuntimeError):
    """A stage failed on a fault that may pass: an OSError, a locked database or DVC repo."""


# OSErrors about a path (missing, wrong kind, no permission) need a person, not a retry.
PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
PATH_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM}
# ugan.pipeline.stage.entry_point's `error: …` (exit 2), with its indented continuation lines.
USER_ERROR = re.compile(r"^error: (?P<message>.+(?:\n[ \t]+\S.*)*)", re.M)
EXCEPTION_LINE = re.compile(r"^(?:\w+\.)*(?P<type>\w+): ", re.M)  # a traceback's last line
ERRNO = re.compile(r"\[Errno (?P<errno>\d+)\]")


def _transient_os_error(output: str) -> bool:
    for match in EXCEPTION_LINE.finditer(output):
        kind = getattr(builtins, match["type"], None)
        if isinstance(kind, type) and issubclass(kind, OSError) and kind not in PATH_ERRORS:
            return True
    return any(int(m["errno"]) not in PATH_ERRNOS for m in ERRNO.finditer(output))


# Named patterns of transient faults in a failed stage's output.
TRANSIENT_FAULTS = {
    "OSError": _transient_os_error,
    "database is locked": lambda output: "database is locked" in output,
    "DVC repository locked by another dvc process": lambda out: "Unable to acquire lock" in out,
    # What real concurrent DVC prints: another `dvc` holds the read/write lock of a path this
    # stage reads or writes (DVC frees the repository lock while a stage runs).
    "a path locked by another dvc process": lambda out: "is being blocked by" in out,
}


def classify_failure(stage: str, output: str) -> Exception:
    """The exception for a failed `dvc repro` of `stage`, from what it printed."""
    user_errors = USER_ERROR.findall(output)
    if user_errors:
        return StageError(f"{stage}: {user_errors[-1]}")
    for name, matches in TRANSIENT_FAULTS.items():
        if matches(output):
            return TransientStageError(f"{stage}: {name}:\n{_tail(output)}")
    return StageError(f"{stage} failed:\n{_tail(output)}")


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TransientStageError):
        return True
    return isinstance(error, OSError) and not isinstance(error, PATH_ERRORS)


def _retry_if_transient(task, run, state) -> bool:
    try:
        state.result()
    except Exception as error:
        return is_transient(error)
    return False


def _tail(output: str, lines: int = OUTPUT_TAIL) -> str:
    return "\n".join(output.rstrip().splitlines()[-lines:])


# -- the tasks --------------------------------------------------------------------------------


def stage_env(extra: dict[str, str]) -> dict[str, str]:
    """The stage processes' environment: ours, `extra`, and our interpreter first on PATH, so
    `python stages/…` in dvc.yaml runs with the packages of the process that runs the flow."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, **extra, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


@task(
    name="dvc-stage",
    task_run_name="{stage}",
    retries=STAGE_RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=_retry_if_transient,
    cache_policy=NO_CACHE,  # DVC owns caching
    persist_result=False,
)
def run_stage(project: str, stage: str, env: dict[str, str]) -> dict[str, Any]:
    """`dvc repro --single-item <stage>` in `project`; its upstream stages ran before it."""
    logger = get_run_logger()
    started, started_at = time.monotonic(), time.time()
    result = subprocess.run(  # --wait-for-lock: the runs' cells run side by side (run_stages)
        [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", stage],
        cwd=project,
        env=stage_env(env),
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        logger.error("%s failed (exit %d):\n%s", stage, result.returncode, _tail(output))
        raise classify_failure(stage, output)
    status = outcome(stage, output)
    seconds = round(time.monotonic() - started, 2)
    logger.info("%s: %s in %.1f s\n%s", stage, status, seconds, _tail(output, 10))
    return {
        "stage": stage,
        "status": status,
        "seconds": seconds,
        "started_at": started_at,
        "attempts": task_run.run_count,
    }


@task(name="champion", cache_policy=NO_CACHE, persist_result=False)
def compare_with_champion(
    project: str, model: str, run_keys: list[str], experiment: str, uri: str, parent: str | None
) -> dict[str, Any]:
    """The best generator of this execution against the registry's champion."""
    client = MlflowClient(uri)
    decision = champion.crown(client, model, Path(project), run_keys, experiment)
    if parent:
        champion.record(client, parent, decision)
    get_run_logger().info(decision.summary())
    return decision.as_dict()


# -- the flow ---------------------------------------------------------------------------------


def run_stages(
    project: str, stages: list[str], run_keys: list[str], jobs: int, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Every stage's outcome, in DVC's order; run as `ugan run` runs them
    (`ugan.pipeline.side_by_side`): the shared stages one at a time, then the runs' cells
    (train_gan → evaluate, `run_cells`), then the stages that join them."""
    shared = set(shared_stages(project))
    done = {s: run_stage(project, s, env) for s in stages if s in shared}
    cells = [[s for s in cell_stages(key) if s in stages] for key in run_keys]
    done |= run_cells(project, [cell for cell in cells if cell], jobs, env)
    done |= {s: run_stage(project, s, env) for s in stages if s not in done}
    return [done[s] for s in stages]


def run_cells(
    project: str, cells: list[list[str]], jobs: int, env: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Each cell's stages as tasks in order (evaluate after its training), at most `jobs` cells
    at once, the next cell started as soon as one ends; torch's threads split by the cells
    running (`UGAN_JOBS`, and the live count in `UGAN_JOBS_FILE`, as `ugan run` keeps it). A
    failed stage raises here, as its task's result, after its retries."""
    outcomes: dict[str, dict[str, Any]] = {}
    pending, running = list(cells), {}  # running: a cell's current task → (cell, stage index)
    with side_by_side.live_jobs() as counter:
        cell_env = env | {JOBS_ENV: str(jobs)} | counter.env

        def submit(cell: list[str], index: int) -> None:
            running[run_stage.submit(project, cell[index], cell_env)] = (cell, index)

        while pending or running:
            while pending and len(running) < max(1, jobs):
                submit(pending.pop(0), 0)
            counter.set(len(running))
            future = next(as_completed(list(running)))
            cell, index = running.pop(future)
            outcomes[cell[index]] = future.result()
            if index + 1 < len(cell):
                submit(cell, index + 1)
    return outcomes


def summarize(stages: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    ran = [s["stage"] for s in stages if s["status"] == "ran"]
    cached = [s["stage"] for s in stages if s["status"] == "cached"]
    if ran:
        message = f"ran {len(ran)} of {len(stages)} stages ({', '.join(ran)}) in {seconds:.1f} s"
    else:
        message = f"all {len(stages)} stages cached: nothing changed ({seconds:.1f} s)"
    return {
        "stages": stages,
        "ran": ran,
        "cached": cached,
        "all_cached": not ran,
        "seconds": round(seconds, 2),
        "message": message,
    }


def _pipeline_id() -> str:
    run_id = flow_run.get_id()
    return f"prefect-{str(run_id).replace('-', '')[:12] if run_id else uuid.uuid4().hex[:12]}"


def _record_run(uri: str, parent: str, result: dict[str, Any]) -> None:
    client = MlflowClient(uri)
    client.set_tag(parent, "ugan.flow.message", result["message"])
    client.set_tag(parent, "ugan.flow.ran", ",".join(result["ran"]) or "-")
    client.log_metric(parent, "stages_ran", len(result["ran"]))
    client.log_metric(parent, "pipeline_seconds", result["seconds"])
    if flow_run.get_id():
        client.set_tag(parent, "ugan.prefect.flow_run_id", str(flow_run.get_id()))


@flow(name=FLOW_NAME, persist_result=True, result_serializer="json")
def pipeline_flow(
    project: str = ".", model_name: str = champion.DEFAULT_MODEL, compare: bool = True
) -> dict[str, Any]:
    """Run every DVC stage of `project` in DVC's order, then (if `compare`) check the best new
    generator against the champion of registered model `model_name`."""
    logger = get_run_logger()
    root = Path(project).resolve()
    params = load_params(root / "params.yaml")  # a config error stops here, before any stage
    stages = dvc_stages(root)
    pipeline, uri = _pipeline_id(), tracking_uri(root)
    parent = open_pipeline_run(pipeline, params.tracking.experiment, uri)
    env = {PIPELINE_ENV: pipeline, "MLFLOW_TRACKING_URI": uri}
    env |= {PARENT_ENV: parent} if parent else {}
    logger.info("pipeline %s: %d stages from DVC: %s", pipeline, len(stages), ", ".join(stages))
    started = time.monotonic()
    try:
        jobs = side_by_side.default_jobs(params.device, len(params.runs))
        outcomes = run_stages(str(root), stages, list(params.runs), jobs, env)
        result = summarize(outcomes, time.monotonic() - started)
        result |= {"pipeline_id": pipeline, "parent_run_id": parent, "champion": None}
        logger.info(result["message"])
        if compare:
            result["champion"] = compare_with_champion(
                str(root),
                model_name,
                list(params.runs),
                params.tracking.experiment,
                uri,
                parent,
            )
        if parent:
            _record_run(uri, parent, result)
            close_pipeline_run(parent, "FINISHED", uri)
    except BaseException:
        if parent:
            close_pipeline_run(parent, "FAILED", uri)
        raise
    return result


# -- the deployment ---------------------------------------------------------------------------


class PrefectServerError(UserError):
    """No Prefect server configured, reachable, or holding the deployment asked for."""


START_SERVER = (
    "start one with `prefect server start --host 127.0.0.1` and "
    "export PREFECT_API_URL=http://127.0.0.1:4200/api"
)


def require_server() -> str:
    """The Prefect API URL of a server that answers; a clear error otherwise (serving against
    the temporary in-process server would lose the schedule when the process ends)."""
    import httpx
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise PrefectServerError(f"PREFECT_API_URL is not set: {START_SERVER}")
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as error:
        raise PrefectServerError(
            f"no Prefect server answers at PREFECT_API_URL={url} ({type(error).__name__}: "
            f"{error}); {START_SERVER}"
        ) from None
    return url


def serve_nightly(
    project: str | Path = ".",
    *,
    name: str = DEFAULT_DEPLOYMENT,
    cron: str = DEFAULT_CRON,
    model_name: str = champion.DEFAULT_MODEL,
) -> None:
    """Create (or update) deployment `ugan-pipeline/<name>` with `cron` and run its flow runs
    here until interrupted: scheduled ones and those triggered by hand."""
    from prefect.deployments.runner import EntrypointType

    require_server()
    pipeline_flow.serve(
        name=name,
        cron=cron,
        parameters={"project": str(Path(project).resolve()), "model_name": model_name},
        description="nightly: rerun the DVC pipeline, keep the best generator as champion",
        limit=1,  # one pipeline at a time: DVC holds a repository lock anyway
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def trigger(name: str = DEFAULT_DEPLOYMENT, timeout: float | None = None):
    """Start a run of deployment `ugan-pipeline/<name>` now; wait up to `timeout` seconds
    (None: until it ends, 0: not at all). Returns the flow run."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    url = require_server()
    try:
        return run_deployment(f"{FLOW_NAME}/{name}", timeout=timeout, poll_interval=2)
    except ObjectNotFound:
        raise PrefectServerError(
            f"the Prefect server at {url} has no deployment {FLOW_NAME}/{name}: "
            "start `ugan serve` (it creates the deployment and runs its flow runs) first"
        ) from None
