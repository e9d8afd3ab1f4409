"""`ugan flow`, `ugan serve` and `ugan trigger`: the Prefect pipeline flow once here, the nightly
deployment (every stage in the serving process, or fanned out over a work pool with `--pool`),
and a run of it now. Registered in `ugan.pipeline.cli`'s command table."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

FLOW_COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int], Callable]] = {}


def command(name: str, help: str, arguments=lambda parser: None):
    def decorate(fn):
        FLOW_COMMANDS[name] = (help, fn, arguments)
        return fn

    return decorate


def model_name_argument(parser: argparse.ArgumentParser) -> None:
    """`--model-name`: the registered model whose champion a command checks (`ugan run` too)."""
    parser.add_argument(
        "--model-name",
        default="ugan-generator",
        help="registered MLflow model holding the champion (default: ugan-generator)",
    )


def _flow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", default=".", help="the DVC project (default: .)")
    model_name_argument(parser)


@command(
    "flow",
    "run the Prefect pipeline flow once, here: DVC stages, then the champion check",
    lambda p: (
        _flow_arguments(p),
        p.add_argument("--no-compare", action="store_true", help="skip the champion check"),
    ),
)
def flow(args: argparse.Namespace) -> int:
    from ugan.pipeline.flows import pipeline_flow

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
        p.add_argument(
            "--pool",
            default=None,
            help="fan the runs out over this Prefect work pool (`ugan worker`s train them); "
            "default: every stage in this process",
        ),
        p.add_argument("--remote", default="origin", help="the shared git remote (with --pool)"),
    ),
)
def serve(args: argparse.Namespace) -> int:
    if args.pool is None:
        from ugan.pipeline.flows import serve_nightly

        serve_nightly(args.project, name=args.name, cron=args.cron, model_name=args.model_name)
        return 0
    from pathlib import Path

    from ugan.config.load import load_params
    from ugan.pipeline.grids import serve_nightly_on_pool
    from ugan.pipeline.workers import deploy, require_servers

    load_params(Path(args.project) / "params.yaml")  # a project, before anything is deployed
    require_servers()
    deploy(args.pool)
    serve_nightly_on_pool(
        args.project, args.pool, name=args.name, cron=args.cron,
        model_name=args.model_name, remote=args.remote,
    )  # fmt: skip
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
    from ugan.pipeline.flows import trigger as start

    run = start(args.name, timeout=args.timeout)
    print(f"flow run {run.name} ({run.id}): {run.state.name}")
    if run.state.is_completed():
        print(json.dumps(run.state.result(), indent=2))
    return 0 if run.state.is_completed() or not run.state.is_final() else 1
