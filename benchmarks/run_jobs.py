"""Benchmark — `make run`'s pipeline with its runs side by side: `ugan run` (by default one cell
per run and per core at once on a CPU, ugan.pipeline.side_by_side) against `ugan run --jobs 1`
(the runs one after the other, as a plain `dvc repro`), each in its own fresh project, in the
same run. Prints both wall times, their ratio, and each way's report verdicts and final FIDs,
which must say the same (goal: the default `make run` ≤ 10 min with the same verdicts).

    python benchmarks/run_jobs.py [--gan-steps N] [--vae-steps N]  # default: params.yaml's

Each project is a copy of src/, stages/, dvc.yaml and params.yaml (as tests make them) with its
own git repo, DVC cache and MLflow store; OMP_NUM_THREADS, UGAN_THREADS and UGAN_JOBS are removed
from the environment, so stages size their threads as they do for a user.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from common import (
    arguments,
    init_project,
    machine,
    merge,
    repo_params,
    report,
    sh,
    table,
)

WAYS = {"side by side (default)": [], "one after the other (--jobs 1)": ["--jobs", "1"]}


def outcome(path: Path) -> dict:
    """What the report concluded: each pair's verdict and both runs' final FIDs."""
    pairs = json.loads((path / "reports" / "report.json").read_text())["pairs"]
    finals = {}
    for key in {k for p in pairs for k in (p["ordinary"], p["unbalanced"])}:
        score = json.loads((path / "evaluation" / key / "score.json").read_text())
        finals[key] = score[key]["fid"]  # at the last checkpoint
    return {"verdicts": [p["verdict"] for p in pairs], "final_fid": finals}


def conclusions(verdicts: list[str]) -> list[str]:
    """Each verdict without its numbers in brackets: "Unbalanced beats ordinary at 3 of 3 early
    checkpoints". One torch thread per cell instead of two changes float sums, so the FIDs move a
    little; what the report concludes must not."""
    return [verdict.split(" (")[0] for verdict in verdicts]


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--gan-steps", type=int, help="gan.steps (default: params.yaml's)")
    parser.add_argument("--vae-steps", type=int, help="vae.steps (default: params.yaml's)")
    args = parser.parse_args()
    shorter: dict = {}
    if args.gan_steps:  # the default's 8 checkpoints, over fewer steps
        shorter["gan"] = {"steps": args.gan_steps, "checkpoint_every": max(1, args.gan_steps // 8)}
    if args.vae_steps:
        shorter["vae"] = {"steps": args.vae_steps, "sample_every": args.vae_steps}
    params = merge(repo_params(), shorter)

    figures: dict = {"shortened": shorter, "ways": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (way, flags) in enumerate(WAYS.items()):
            path = Path(tmp) / f"way{i}"
            env = init_project(path, params)
            output, seconds = sh(
                [sys.executable, "-m", "ugan.pipeline.cli", "run", *flags], path, env, 3600
            )
            figures["ways"][way] = {"seconds": seconds, **outcome(path)}
            print(f"{way}: {seconds:.1f} s", flush=True)
    side, plain = (figures["ways"][way] for way in WAYS)
    figures["ratio"] = side["seconds"] / plain["seconds"]
    figures["same_verdicts"] = conclusions(side["verdicts"]) == conclusions(plain["verdicts"])

    title = "params.yaml" + (f", shortened: {shorter}" if shorter else " (the default make run)")
    print(f"\n`ugan run`, {title}\n")
    print(
        table(
            ["way", "seconds", "min:s", "× one after the other", "final FIDs"],
            [
                [
                    way,
                    f"{f['seconds']:.1f}",
                    f"{int(f['seconds'] // 60)}:{f['seconds'] % 60:04.1f}",
                    f"{f['seconds'] / plain['seconds']:.2f}",
                    ", ".join(f"{k} {v:.1f}" for k, v in sorted(f["final_fid"].items())),
                ]
                for way, f in figures["ways"].items()
            ],
        )  # fmt: skip
    )
    for way, f in figures["ways"].items():
        print(f"\n{way}:\n" + "\n".join(f"  {v}" for v in f["verdicts"]))
    print(f"\nsame verdicts: {figures['same_verdicts']}")
    report(args, "run_jobs", machine("cpu"), figures)


if __name__ == "__main__":
    main()
