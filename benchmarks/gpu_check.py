"""`make gpu-check`: everything a GPU runner must prove, in one command of at most ~8 minutes.

    python benchmarks/gpu_check.py            # writes benchmarks/results/gpu.json

1. the CUDA tests (`tests/test_accel.py`): none of them may skip when CUDA is visible;
2. the throughput benchmark on CUDA at 28 and 64 px: ugan's loop ÷ a plain pytorch/examples loop
   for fp32 (`exact`, `default`), bf16 + channels_last (`fast`) and compile (`fast+compile`);
3. a tiny real `dvc repro` of the whole pipeline with `device: cuda` and a non-default `perf:`;
4. the method × preset matrix (`benchmarks/gpu_matrix.py`, in its own process): every method
   (gan with ns and wgan-gp, began, rfgan, gaan) × default / bf16 + channels_last /
   deterministic / bf16 + channels_last + compile trains with finite losses and loadable
   checkpoints and no host sync outside log / checkpoint steps; FID on CUDA within 1 % of the
   CPU's; a CUDA checkpoint loads on the CPU with the same samples, and a CUDA resume state is
   refused on the CPU (the resume identity holds the device type). Its rows go to gpu.json and
   to a table; any failed row fails the check;
5. ms per training step of each Stacked MNIST variant of `gaan-stacked-mnist-long` on CUDA
   (`benchmarks/mode_steps.py --row`), and that row's training hours projected from them.

Without a CUDA GPU it says so and exits 0 (CPU machines run everything else in `make test`).
With one, any step that fails makes the command fail (exit 1) after the others ran, with the
step's output tail: a GPU check never skips silently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import copy_pipeline, merge, repo_params, table

from ugan.core import paths

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PREPARED = ROOT / paths.PREPARED  # what `stages/prepare.py` writes
PY = sys.executable
TINY = {
    "classifier": {"steps": 60, "min_accuracy": 0.0},
    "model": {"latent_dim": 16, "base_channels": 8},
    "vae": {"steps": 40, "sample_every": 20},
    "dae": {"steps": 10, "sample_every": 5},
    "gan": {"steps": 60, "checkpoint_every": 20, "batch_size": 64, "num_sample_images": 16},
    "eval": {"num_samples": 500, "kid_subset_size": 100},
    "device": "cuda",
    "perf": {"precision": "bf16", "channels_last": True},
}


def _run(cmd: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: float = 300):
    started = time.monotonic()
    try:
        result = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        code, output = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as expired:
        code, output = 124, f"timed out after {timeout} s\n{expired.stdout or ''}"
    return code, output, round(time.monotonic() - started, 1)


def cuda_tests() -> dict:
    code, output, seconds = _run([PY, "-m", "pytest", "-q", "-rs", "tests/test_accel.py"])
    skipped = [line for line in output.splitlines() if "needs a CUDA GPU" in line]
    ok = code == 0 and not skipped
    return {"ok": ok, "seconds": seconds, "skipped_cuda_tests": skipped, "tail": output[-1500:]}


def throughput(image_size: int, steps: int) -> dict:
    out = RESULTS / f"gpu-throughput-{image_size}.json"
    cmd = [
        *(PY, "benchmarks/throughput.py", "--device", "cuda", "--steps", str(steps)),
        *("--image-size", str(image_size), "--json", str(out)),
    ]
    code, output, seconds = _run(cmd, timeout=240)
    figures = json.loads(out.read_text())["figures"]["loops"] if code == 0 and out.is_file() else {}
    return {"ok": code == 0, "seconds": seconds, "figures": figures, "tail": output[-1500:]}


def tiny_pipeline() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        copy_pipeline(project, merge(repo_params(), TINY))
        env = dict(
            os.environ,
            PATH=f"{Path(PY).parent}{os.pathsep}{os.environ['PATH']}",
            PYTHONPATH=str(project / "src"),
            MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}",
        )
        for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
            _run(cmd, project, env)
        code, output, seconds = _run(["dvc", "repro"], project, env, timeout=300)
        produced = (project / "reports/report.md").is_file()
        summary = {}  # each run's final and best FID: the DVC metrics
        for score in sorted(project.glob("evaluation/*/score.json")):
            summary |= json.loads(score.read_text())
    return {
        "ok": code == 0 and produced,
        "seconds": seconds,
        "report_written": produced,
        "summary": summary,
        "tail": output[-2500:],
    }


def method_matrix(steps: int = 24) -> dict:
    """benchmarks/gpu_matrix.py on CUDA in its own process: the deterministic cells need
    CUBLAS_WORKSPACE_CONFIG before CUDA starts, and no cell inherits another's CUDA state."""
    out = RESULTS / "gpu-matrix.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8")
    env.pop("UGAN_FRESH_START", None)
    cmd = [PY, "benchmarks/gpu_matrix.py", "--device", "cuda", "--steps", str(steps)]
    code, output, seconds = _run([*cmd, "--json", str(out)], env=env, timeout=300)
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    ok = code == 0 and bool(rows) and all(row["ok"] for row in rows)
    return {"ok": ok, "seconds": seconds, "rows": rows, "tail": output[-2500:]}


def stacked_steps(
    steps: int = 200, device: str = "cuda", prepared: Path = PREPARED, warmup: int = 50
) -> dict:
    """ms per training step of each Stacked MNIST variant on CUDA, and the training hours of
    `ugan reproduce gaan-stacked-mnist-long` projected from them (`benchmarks/mode_steps.py
    --row`): what that row needs, measured where it would run. Prepares the digits first."""
    if not prepared.is_file():
        code, output, _ = _run([PY, "stages/prepare.py"], timeout=180)
        if code != 0:
            return {"ok": False, "seconds": 0, "tail": output[-1500:]}
    out = RESULTS / "gpu-stacked-steps.json"
    out.unlink(missing_ok=True)
    cmd = [
        *(PY, "benchmarks/mode_steps.py", "--row", "gaan-stacked-mnist-long"),
        *("--device", device, "--steps", str(steps), "--warmup", str(warmup), "--rounds", "1"),
        *("--prepared", str(prepared)),
    ]
    code, output, seconds = _run([*cmd, "--json", str(out)], timeout=300)
    figures = json.loads(out.read_text())["figures"] if code == 0 and out.is_file() else {}
    return {"ok": bool(figures), "seconds": seconds, "stacked": figures, "tail": output[-1500:]}


def matrix_table(rows: list[dict]) -> str:
    """The matrix's rows as a table: a failed row shows its error, a passed one what it
    measured (host syncs outside the log / checkpoint steps; FID per device)."""
    lines = []
    for row in rows:
        if not row["ok"]:
            detail = row.get("error", "")[:200]
        elif "fid" in row:
            detail = ", ".join(f"{k} {v:.3f}" for k, v in row["fid"].items())
        elif "max_sample_difference" in row:
            refused = f"refused: {row['refused']}; " if "refused" in row else ""
            detail = f"{refused}max |Δ sample| {row['max_sample_difference']:.1e}"
        else:
            detail = f"{row.get('audited_steps', 0)} steps audited"
        verdict = "ok" if row["ok"] else "FAILED"
        cells = (row["check"], row["method"], row["loss"], row["preset"], verdict)
        lines.append([*cells, row.get("seconds", "?"), row.get("syncs", ""), detail])
    headers = ["check", "method", "loss", "preset", "result", "s", "syncs", "detail"]
    return table(headers, lines)


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU is visible here; nothing to check (run it on a GPU runner)")
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    steps = {
        "cuda tests": cuda_tests,
        "throughput 28 px": lambda: throughput(28, 300),
        "throughput 64 px": lambda: throughput(64, 150),
        "tiny dvc repro on cuda, bf16 + channels_last": tiny_pipeline,
        "method × preset matrix on cuda": method_matrix,
        "Stacked MNIST steps on cuda (sizes gaan-stacked-mnist-long)": stacked_steps,
    }
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "steps": {}}
    for name, step in steps.items():
        print(f"gpu-check: {name} …", flush=True)
        try:
            results["steps"][name] = step()
        except Exception as error:  # a broken step must not hide the others' results
            results["steps"][name] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        outcome = results["steps"][name]
        print(f"  {'ok' if outcome['ok'] else 'FAILED'} ({outcome.get('seconds', '?')} s)")
        if not outcome["ok"]:
            print(outcome.get("tail") or outcome.get("error"), file=sys.stderr)
    (RESULTS / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'step':50s} result")
    for name, outcome in results["steps"].items():
        print(f"{name:50s} {'ok' if outcome['ok'] else 'FAILED'}")
        for loop, figure in outcome.get("figures", {}).items():
            ratio = figure.get("ratio", float("nan"))  # ÷ the plain loop; the goal is ≥ 1.5
            print(f"    {loop:46s} {figure.get('images_per_s', 0):8.0f} img/s  {ratio:.2f}×")
        if outcome.get("rows"):
            print(matrix_table(outcome["rows"]))
        if stacked := outcome.get("stacked"):
            for variant, figure in stacked.items():
                if isinstance(figure, dict):  # a variant's timings, beside the run's settings
                    print(f"    {variant:46s} {figure['fused_ms']:8.2f} ms/step")
            print(f"    gaan-stacked-mnist-long, training: ~{stacked['projected_hours']:.1f} h")
    print(f"written: {RESULTS / 'gpu.json'}")
    return 0 if all(o["ok"] for o in results["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
