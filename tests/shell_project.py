"""A real DVC project whose stages are shell commands, shaped as ugan's pipeline: shared stage →
train_gan@<run> → evaluate@<run> → report. For the schedulers of the runs' cells (`ugan run`'s,
the Prefect flow's) without training anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
# Each cell stage records when it ran; the one of run `bad` fails.
STAGE = "t0=$(date +%s.%N); sleep 1.5 && test {item} != bad && echo $t0 $(date +%s.%N) > {out}"


def shell_project(path: Path, runs: list[str], stage: str = STAGE) -> dict:
    stages = {
        "shared": {"cmd": "echo data > shared.txt", "outs": ["shared.txt"]},
        "train_gan": {
            "foreach": runs,
            "do": {
                "cmd": stage.format(item="${item}", out="train-${item}.txt"),
                "deps": ["shared.txt"],
                "outs": ["train-${item}.txt"],
            },
        },
        "evaluate": {
            "foreach": runs,
            "do": {
                "cmd": stage.format(item="${item}", out="eval-${item}.txt"),
                "deps": ["train-${item}.txt"],
                "outs": ["eval-${item}.txt"],
            },
        },
        "report": {
            "cmd": "cat eval-*.txt > report.txt",
            "deps": [f"eval-{run}.txt" for run in runs],
            "outs": ["report.txt"],
        },
    }
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env |= {k: "t" for k in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME")}
    env |= {k: "t@t" for k in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL")}
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        subprocess.run(cmd, cwd=path, env=env, check=True)
    return env
