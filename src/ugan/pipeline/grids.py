"""Sending a grid to a work pool, waiting for it, and crowning the champion from the tracking
server's scores (not from one workspace's files); the nightly run fanned out the same way
(`nightly_on_pool`: params.yaml's runs as the grid, `ugan serve --pool`).

The flows' outcomes travel through the shared services only: a cell's summary is a Prefect
artifact of its flow run (stored by the Prefect server), the grid's commit is a branch of the
shared git remote, the scores are the MLflow metrics the evaluate stages logged.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger

from ugan.config.load import load_params, parse_params
from ugan.config.profiles import apply_profile, load_profile, render_params
from ugan.core.errors import UserError
from ugan.pipeline import champion
from ugan.pipeline.cluster import CELL_FLOW, SUMMARY_KEY, UPSTREAM_FLOW
from ugan.pipeline.flows import FLOW_NAME, require_server
from ugan.tracking.pipeline_run import close_pipeline_run, open_pipeline_run

RESUBMITS = 2  # a cell that Crashed outright (worker alive) is submitted again this often
POLL_SECONDS = 2.0
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def read_summary(client, flow_run_id) -> dict[str, Any] | None:
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
    )

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )
    for artifact in artifacts:
        if artifact.description == SUMMARY_KEY and artifact.data:
            text = str(artifact.data)
            return json.loads(text[text.index("{") : text.rindex("}") + 1])
    return None


def _git(args: list[str], cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise UserError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def base_commit(project: Path, remote: str) -> tuple[str, str]:
    """(the shared remote's URL, HEAD), once HEAD is known to be on that remote."""
    url = _git(["remote", "get-url", remote], project)
    head = _git(["rev-parse", "HEAD"], project)
    _git(["fetch", "--quiet", remote], project)
    if not _git(["branch", "-r", "--contains", head], project):
        raise UserError(
            f"commit {head[:12]} is not on git remote {remote!r}: `git push {remote}` first, "
            "the workers check it out from there"
        )
    return url, head


def _start(deployment: str, parameters: dict, name: str):
    from prefect.deployments import run_deployment

    return run_deployment(deployment, parameters=parameters, timeout=0, flow_run_name=name)


def wait(
    client, runs: dict[str, Any], deployment: str, parameters: dict[str, dict], sent: dict
) -> dict:
    """Poll until every run is final; a Crashed run (its machine lost, or its process died) is
    submitted again as a new flow run, at most RESUBMITS times. `sent` counts submissions."""
    states: dict[str, Any] = {}
    while True:
        for key, run in runs.items():
            state = client.read_flow_run(run.id).state
            sent.setdefault(key, 1)
            if state.type.name == "CRASHED" and sent[key] <= RESUBMITS:
                sent[key] += 1
                runs[key] = _start(deployment, parameters[key], f"{run.name}-{sent[key]}")
                states.pop(key, None)
                continue
            states[key] = state
        if len(states) == len(runs) and all(s.type.name in FINAL_STATES for s in states.values()):
            return states
        time.sleep(POLL_SECONDS)


def submit_grid(
    project: Path,
    profile: str | None,
    pool: str,
    name: str,
    remote: str = "origin",
    model_name: str = champion.DEFAULT_MODEL,
    params_file: Path = Path("params.yaml"),
) -> dict[str, Any]:
    """The whole grid on the pool: shared stages once, then every cell, then the champion.
    `profile` None: the runs of params.yaml as they are (the nightly run)."""
    import os

    from prefect.client.orchestration import get_client

    from ugan.tracking.pipeline_run import PARENT_ENV, PIPELINE_ENV

    original = (project / params_file).read_text()
    if profile is None:
        text, params = original, parse_params(yaml.safe_load(original))
    else:
        profiled = load_profile(profile, project / "profiles")
        merged, params = apply_profile(yaml.safe_load(original), profiled)
        text = render_params(original, merged)
    repo, commit = base_commit(project, remote)
    uri = os.environ["MLFLOW_TRACKING_URI"]
    parent = open_pipeline_run(name, params.tracking.experiment, uri)
    env = {"MLFLOW_TRACKING_URI": uri, PIPELINE_ENV: name} | (
        {PARENT_ENV: parent} if parent else {}
    )
    result: dict[str, Any] = {"grid": name, "cells": [], "ok": False, "champion": None}
    try:
        with get_client(sync_client=True) as client:
            upstream = {"upstream": {"repo": repo, "commit": commit, "grid": name,
                                     "params_text": text, "env": env}}  # fmt: skip
            runs = {"upstream": _start(f"{UPSTREAM_FLOW}/{pool}", upstream["upstream"],
                                       f"{name}/upstream")}  # fmt: skip
            sent: dict[str, int] = {}
            state = wait(client, runs, f"{UPSTREAM_FLOW}/{pool}", upstream, sent)["upstream"]
            shared = read_summary(client, runs["upstream"].id) if state.is_completed() else None
            if shared is None:
                raise UserError(f"grid {name}: the shared stages ended {state.name}: "
                                f"{state.message or 'see the Prefect UI'}")  # fmt: skip
            result |= {"commit": shared["commit"], "upstream": shared}
            cells = {
                key: {
                    "repo": repo,
                    "commit": shared["commit"],
                    "grid": name,
                    "run_key": key,
                    "env": env,
                }  # fmt: skip
                for key in params.runs
            }
            runs = {key: _start(f"{CELL_FLOW}/{pool}", p, f"{name}/{key}")
                    for key, p in cells.items()}  # fmt: skip
            states = wait(client, runs, f"{CELL_FLOW}/{pool}", cells, sent)
            for key, state in states.items():
                summary = read_summary(client, runs[key].id) or {}
                fid = summary.get("final", {}).get("fid", math.nan)
                result["cells"].append(
                    {
                        **summary,
                        "run_key": key,
                        "state": state.name,
                        "fid": fid,
                        "flow_run": str(runs[key].id),
                        "submissions": sent[key],
                    }  # fmt: skip
                )
        result["ok"] = all(c["state"] == "Completed" for c in result["cells"])
        result["orphans_killed"] = close_orphans(
            MlflowClient(uri), params.tracking.experiment, name
        )
        if result["ok"]:
            mlflow = MlflowClient(uri)
            decision = crown_from_server(mlflow, model_name, params.tracking.experiment, name)
            if parent:
                champion.record(mlflow, parent, decision)
            result["champion"] = decision.as_dict()
    finally:
        if parent:
            close_pipeline_run(parent, "FINISHED" if result["ok"] else "FAILED", uri)
    return result


# -- the nightly run on the pool ------------------------------------------------------------


# Named as the one-process nightly flow (`ugan.pipeline.flows`), so the deployment is
# `ugan-pipeline/<name>` whichever way it runs and `ugan trigger` starts either.
@flow(name=FLOW_NAME, persist_result=True, result_serializer="json")
def nightly_on_pool(
    project: str = ".",
    pool: str = "ugan",
    model_name: str = champion.DEFAULT_MODEL,
    remote: str = "origin",
) -> dict[str, Any]:
    """The nightly run fanned out over work pool `pool`: params.yaml's runs are the cells of a
    grid (the shared stages once, then one flow run per run, taken by the pool's workers), and
    the champion is decided from the tracking server's scores. HEAD must be on `remote`."""
    logger = get_run_logger()
    root = Path(project).resolve()
    load_params(root / "params.yaml")  # a config error fails the run before anything is sent
    name = f"nightly-{time.strftime('%Y%m%d-%H%M%S')}"
    logger.info("nightly %s: params.yaml's runs as cells on pool %s", name, pool)
    result = submit_grid(root, None, pool, name, remote, model_name)
    for cell in result["cells"]:
        logger.info("%s: %s on %s, FID %.3f", cell["run_key"], cell["state"],
                    cell.get("worker", "-"), cell["fid"])  # fmt: skip
    if not result["ok"]:
        failed = [c["run_key"] for c in result["cells"] if c["state"] != "Completed"]
        raise UserError(f"nightly {name}: cells {failed} did not complete (see the Prefect UI)")
    logger.info(result["champion"]["summary"])
    return result


def serve_nightly_on_pool(
    project: str | Path, pool: str, *, name: str, cron: str, model_name: str, remote: str
) -> None:
    """Deployment `ugan-pipeline/<name>` of `nightly_on_pool`, served here until interrupted:
    this process only sends cells to the pool and waits for them; the workers train."""
    from prefect.deployments.runner import EntrypointType

    require_server()
    parameters = {"project": str(Path(project).resolve()), "pool": pool,
                  "model_name": model_name, "remote": remote}  # fmt: skip
    nightly_on_pool.serve(
        name=name,
        cron=cron,
        parameters=parameters,
        description=f"nightly: params.yaml's runs as cells on work pool {pool}, champion "
        "from the tracking server",
        limit=1,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


# -- the champion, from the tracking server ---------------------------------------------------


def close_orphans(client: MlflowClient, experiment: str, pipeline: str) -> list[str]:
    """Stage runs of the grid still RUNNING once every cell is final: their process died with
    its machine (the cell ran again elsewhere). Marked KILLED, tagged `ugan.lost`."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs(
        [found.experiment_id],
        f"tags.`ugan.pipeline_id` = '{pipeline}' and attributes.status = 'RUNNING' "
        "and tags.`ugan.stage` != 'pipeline'",
    )
    for run in runs:
        client.set_tag(run.info.run_id, "ugan.lost", "its process died with its machine")
        client.set_terminated(run.info.run_id, "KILLED")
    return [run.info.run_id for run in runs]


def server_scores(client: MlflowClient, experiment: str, pipeline: str) -> list[champion.Candidate]:
    """Every finished `evaluate` run of pipeline `pipeline`: its run key and the FID of its
    final checkpoint (the last step of its `fid` metric), with the train_gan run behind it."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise champion.RegistryError(
            f"no MLflow experiment {experiment!r} at {client.tracking_uri}"
        )
    common = f"tags.`ugan.pipeline_id` = '{pipeline}' and attributes.status = 'FINISHED'"
    search = lambda stage: client.search_runs(  # noqa: E731
        [found.experiment_id], f"tags.`ugan.stage` = '{stage}' and {common}", max_results=5000
    )
    trained = {}
    for run in sorted(search("train_gan"), key=lambda r: r.info.start_time):
        trained[run.data.tags["ugan.run_key"]] = run.info.run_id  # the newest attempt wins
    candidates = []
    for run in search("evaluate"):
        key = run.data.tags["ugan.run_key"]
        history = client.get_metric_history(run.info.run_id, "fid")
        if not history or key not in trained:
            continue
        last = max(history, key=lambda m: m.step)
        if math.isfinite(last.value):
            candidates.append(champion.Candidate(key, last.value, last.step, trained[key]))
    return candidates


def crown_from_server(
    client: MlflowClient, model: str, experiment: str, pipeline: str
) -> champion.Decision:
    """The best final FID of the grid, as logged to the server, against the registry."""
    candidates = server_scores(client, experiment, pipeline)
    if not candidates:
        raise champion.RegistryError(f"no finished evaluate run of pipeline {pipeline!r}")
    return champion.decide(client, model, min(candidates, key=lambda c: c.fid))
