"""`ugan …`: the commands a user types. Each subcommand is one small function in a registry."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable

from ugan.config import ConfigError, load_params
from ugan.tracking import (
    PARENT_ENV,
    PIPELINE_ENV,
    close_pipeline_run,
    open_pipeline_run,
    tracking_uri,
)

COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int], Callable]] = {}


def command(
    name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
):
    def decorate(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, fn, arguments)
        return fn

    return decorate


@command("validate", "check params.yaml and print the resolved runs")
def validate(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    for key in params.runs:
        run = params.run(key)
        print(f"{key:24s} init={run.init:6s} loss={run.gan.loss:6s} steps={run.gan.steps}")
    print(f"{args.params}: ok")
    return 0


@command(
    "run",
    "validate params, then `dvc repro` the pipeline under one MLflow pipeline id",
    lambda p: p.add_argument("targets", nargs="*", help="stages to reproduce (default: all)"),
)
def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)  # fail before DVC starts anything
    env = dict(os.environ)
    env.setdefault(PIPELINE_ENV, f"run-{uuid.uuid4().hex[:12]}")
    env.setdefault("MLFLOW_TRACKING_URI", tracking_uri())
    print(f"pipeline id {env[PIPELINE_ENV]}; tracking at {env['MLFLOW_TRACKING_URI']}")
    parent = None
    if not env.get(PARENT_ENV):
        parent = open_pipeline_run(
            env[PIPELINE_ENV], params.tracking.experiment, env["MLFLOW_TRACKING_URI"]
        )
        env |= {PARENT_ENV: parent} if parent else {}
    code = subprocess.call(["dvc", "repro", *args.targets], env=env)
    if parent:
        status = "FINISHED" if code == 0 else "FAILED"
        close_pipeline_run(parent, status, env["MLFLOW_TRACKING_URI"])
    return code


@command(
    "ui",
    "start the MLflow UI on 127.0.0.1 with the project's store",
    lambda p: p.add_argument("--port", type=int, default=5000),
)
def ui(args: argparse.Namespace) -> int:
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--workers",
        "1",
        "--backend-store-uri",
        tracking_uri(),
    ]
    print(f"MLflow UI on http://127.0.0.1:{args.port}  (store {tracking_uri()})")
    return subprocess.call(cmd, env=env)


def _flow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", default=".", help="the DVC project (default: .)")
    parser.add_argument(
        "--model-name",
        default="ugan-generator",
        help="registered MLflow model holding the champion (default: ugan-generator)",
    )


@command(
    "flow",
    "run the Prefect pipeline flow once, here: DVC stages, then the champion check",
    lambda p: (
        _flow_arguments(p),
        p.add_argument("--no-compare", action="store_true", help="skip the champion check"),
    ),
)
def flow(args: argparse.Namespace) -> int:
    from ugan.flows import pipeline_flow

    result = pipeline_flow(
        project=args.project, model_name=args.model_name, compare=not args.no_compare
    )
    print(json.dumps(result, indent=2))
    return 0


@command(
    "serve",
    "serve the nightly deployment against the Prefect server in PREFECT_API_URL (blocks)",
    lambda p: (
        _flow_arguments(p),
        p.add_argument("--cron", default="0 2 * * *", help="schedule, UTC (default: 0 2 * * *)"),
        p.add_argument("--name", default="nightly", help="deployment name (default: nightly)"),
    ),
)
def serve(args: argparse.Namespace) -> int:
    from ugan.flows import serve_nightly

    serve_nightly(args.project, name=args.name, cron=args.cron, model_name=args.model_name)
    return 0


@command(
    "trigger",
    "start a run of the served deployment now and print its result",
    lambda p: (
        p.add_argument("--name", default="nightly", help="deployment name (default: nightly)"),
        p.add_argument(
            "--timeout", type=float, default=None, help="seconds to wait (default: until done)"
        ),
    ),
)
def trigger(args: argparse.Namespace) -> int:
    from ugan.flows import trigger as start

    run = start(args.name, timeout=args.timeout)
    print(f"flow run {run.name} ({run.id}): {run.state.name}")
    if run.state.is_completed():
        print(json.dumps(run.state.result(), indent=2))
    return 0 if run.state.is_completed() or not run.state.is_final() else 1


@command("sync", "send tracking data spooled while the MLflow store was unreachable")
def sync(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from ugan.spool import pending, replay
    from ugan.tracking import prepare_store

    uri = tracking_uri()
    prepare_store(uri)
    client = MlflowClient(uri)
    spools = pending()
    for spool in spools:
        print(f"{spool} → run {replay(spool, client)}")
    print(f"{len(spools)} spooled run(s) sent to {uri}")
    return 0


def _grid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", help="a profile in profiles/, e.g. paper-mnist")
    parser.add_argument("--jobs", type=int, default=1, help="parallel DVC queue workers")
    parser.add_argument(
        "--queue-only", action="store_true", help="queue the experiment, do not start workers"
    )
    parser.add_argument(
        "--here",
        action="store_true",
        help="apply the profile to params.yaml and run `dvc exp run` in this workspace (no queue)",
    )


@command("grid", "run a named profile's grid of runs as a DVC experiment", _grid_arguments)
def grid(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import yaml

    from ugan.profiles import apply_profile, load_profile

    params_path = Path(args.params)
    original = params_path.read_text()
    profile = load_profile(args.profile)
    merged, params = apply_profile(yaml.safe_load(original), profile)  # validated before any work
    name = f"{args.profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"profile {args.profile}: {len(params.runs)} runs → experiment {name}")
    env = dict(os.environ)
    env.setdefault(PIPELINE_ENV, name)
    env.setdefault("MLFLOW_TRACKING_URI", tracking_uri())  # absolute: queue workers run elsewhere
    text = yaml.safe_dump(merged, sort_keys=False)
    if args.here:
        params_path.write_text(text)
        return subprocess.call(["dvc", "exp", "run", "-n", name], env=env)
    try:  # the queued experiment snapshots the workspace, params.yaml included
        params_path.write_text(text)
        code = subprocess.call(["dvc", "exp", "run", "--queue", "-n", name], env=env)
    finally:
        params_path.write_text(original)
    if code or args.queue_only:
        return code
    code = subprocess.call(["dvc", "queue", "start", "-j", str(args.jobs)], env=env)
    while not code:
        status = subprocess.run(
            ["dvc", "queue", "status"], env=env, capture_output=True, text=True
        ).stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(10)
    print(f"done. Results: dvc exp show; report: dvc exp apply {name} && open reports/report.md")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ugan", description=__doc__)
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: params.yaml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _fn, arguments) in COMMANDS.items():
        arguments(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
