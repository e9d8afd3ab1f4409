"""`ugan …`: the commands a user types. Each subcommand is one small function in a registry."""

from __future__ import annotations

import argparse
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
