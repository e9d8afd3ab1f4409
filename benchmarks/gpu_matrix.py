"""Step 4 of `make gpu-check`: every method × every `perf:` preset trained on one device, with
what must hold of each cell before any of it may be called fast.

    python benchmarks/gpu_matrix.py --device cuda [--steps 24] [--json PATH]

Cells: gan (losses ns, wgan-gp with n_critic 2), began, rfgan (ns, an untrained DAE encoder),
gaan, each × the presets `default`, `bf16+channels_last`, `deterministic` and
`bf16+channels_last+compile` (compile everywhere: a net a gradient penalty differentiates twice
stays eager by itself, ugan.training.accel). Each cell is one `ugan.training.gan.train_gan` run
(tiny nets, 28 px; set up by gpu_runs.py) and asserts:

- finite losses: `steps` rows in losses.csv, every value finite;
- checkpoints written at the cadence, each loadable by `load_generator` on the device and on
  the CPU, and giving finite samples;
- compile cells: every net compiled except the method's `twice_differentiated` ones;
- the sync audit (gpu_audits.py): no host sync in any training step but the log / checkpoint
  steps and the warm-up, each sync named by step, phase and line. The training data are sized
  (`--train-images`) so that epochs roll over inside the audited steps: an epoch's new shuffle
  order is part of an ordinary step.

Besides the cells, the checks of gpu_audits.py: `cross-device` (a device's resume state is
refused on the CPU; its checkpoint loads there with the same samples) and `fid` (FID of the
gan/ns/default cell's checkpoint on the CPU and on the device agree).

`run_matrix(device, steps, ...)` returns one row per cell and per check: check, method, loss,
preset, ok, seconds, error, and what was measured. tests/test_gpu_matrix.py runs a tiny
version on the CPU; benchmarks/gpu_check.py runs this file on CUDA (in its own process, with
CUBLAS_WORKSPACE_CONFIG set before CUDA starts, for the deterministic cells).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import arguments, machine
from gpu_audits import WARMUP_STEPS, Audited, SyncAudit, cross_device_check, fid_check
from gpu_check import matrix_table
from gpu_runs import (
    PRESETS,
    TINY_ARCH,
    TRAIN_IMAGES,
    NullTracker,
    cadence,
    cadence_steps,
    env_without,
    finish_row,
    make_dae,
    matrix_data,
    perf_of,
    random_recipe,
    resolved_run,
)

from ugan.core.paths import RunLayout
from ugan.data.prepared import PreparedData
from ugan.nets.arch import ArchConfig
from ugan.nets.generator_file import load_generator, noise, sample
from ugan.training.accel import claim_deterministic_cublas, modules_of
from ugan.training.gan import train_gan
from ugan.training.resume import FRESH_ENV

# (method, loss — None: the method's own objective —, gan overrides)
CELLS: list[tuple[str, str | None, dict]] = [
    ("gan", "ns", {}),
    ("gan", "wgan-gp", {"n_critic": 2}),
    ("began", None, {}),
    ("rfgan", "ns", {}),
    ("gaan", "ns", {}),
]


# -- a cell ------------------------------------------------------------------------------------


def compile_problems(method) -> list[str]:
    """Where `perf.compile` did not do what it promises: every net compiled in place except a
    net the method differentiates twice, which stays eager."""
    eager = dict(getattr(method, "twice_differentiated", {}))
    problems = []
    for name, module in modules_of(method).items():
        compiled = getattr(module, "_compiled_call_impl", None) is not None
        if name in eager and compiled:
            problems.append(f"{name} compiled though {eager[name]} differentiates it twice")
        elif name not in eager and not compiled:
            problems.append(f"{name} left eager by perf.compile")
    return problems


def finite_loss_problems(layout: RunLayout, steps: int) -> list[str]:
    with open(layout.losses_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    problems = [] if len(rows) == steps else [f"losses.csv holds {len(rows)} rows, not {steps}"]
    bad = [
        f"step {row['step']} {key}={value}"
        for row in rows
        for key, value in row.items()
        if key != "step" and not math.isfinite(float(value))
    ]
    return problems + ([f"non-finite losses: {', '.join(bad[:5])}"] if bad else [])


def checkpoint_problems(
    layout: RunLayout, expected: list[int], device: torch.device, latent: int
) -> list[str]:
    """Each expected checkpoint exists and loads on the device and on the CPU into a
    generator that gives finite samples of the training images' shape."""
    found = layout.checkpoint_steps()
    if found != expected:
        return [f"checkpoints at steps {found}, expected {expected}"]
    problems = []
    for step in expected:
        for where in dict.fromkeys([device, torch.device("cpu")]):
            generator = load_generator(layout.checkpoint_path(step), where)
            images = sample(generator, noise(4, latent, generator.prior, seed=0, device=where))
            if images.device.type != where.type or not torch.isfinite(images).all():
                problems.append(f"checkpoint {step} on {where}: non-finite or misplaced samples")
    return problems


def train_cell(
    method: str,
    loss: str | None,
    preset: str,
    *,
    device: torch.device,
    data: PreparedData,
    arch: ArchConfig,
    workdir: Path,
    steps: int,
    batch_size: int,
    resources: dict,
    gan: dict | None = None,
    compile_backend: str | None = None,
) -> dict:
    """One cell: train, then every assertion of the module docstring. Never raises: a failure
    is the row's `error`."""
    row = {"check": "train", "method": method, "loss": loss or "own", "preset": preset}
    started = time.perf_counter()
    name = f"{method}-{loss or 'own'}-{preset}".replace("+", "_")
    problems: list[str] = []
    audit = SyncAudit(device)

    def wrap(prepared, batches):
        if perf.compile:
            problems.extend(compile_problems(prepared))
            if compile_backend:  # the CPU test: a backend cheaper than inductor
                eager = getattr(prepared, "twice_differentiated", {})
                for net_name, module in modules_of(prepared).items():
                    if net_name not in eager:
                        module.compile(backend=compile_backend)
        return Audited(prepared, audit)

    try:
        perf = perf_of(preset, device)  # read by `wrap`, which train_gan calls
        run = resolved_run(method, loss, steps, batch_size, **(gan or {}))
        layout = RunLayout(workdir / name)
        with audit.watching():
            summary = train_gan(
                name,
                run,
                arch,
                data,
                random_recipe(arch),
                layout.root,
                NullTracker(),
                device=device,
                resume_root=workdir / "resume",
                perf=perf,
                wrap=wrap,
                resources=resources,
            )
        row |= {k: summary[k] for k in ("d_loss_final", "g_loss_final", "checkpoints")}
        problems += finite_loss_problems(layout, steps)
        _, every = cadence(steps)
        expected = sorted({*range(every, steps + 1, every), steps})
        problems += checkpoint_problems(layout, expected, device, arch.latent_dim)
        allowed = cadence_steps(steps)
        stray = audit.outside(allowed)
        row["audited_steps"] = len(set(range(WARMUP_STEPS + 1, steps + 1)) - allowed)
        row["syncs"] = len(stray)
        row["syncs_at_cadence"] = sum(1 for e in audit.events if e[0] in allowed)
        if stray:
            shown = "; ".join(f"step {s} ({phase}): {where}" for s, phase, where in stray[:6])
            problems.append(
                f"{len(stray)} host syncs in steps that are no log / checkpoint step: {shown}"
            )
    except Exception as error:  # the row says what broke; the other cells still run
        problems.append(f"{type(error).__name__}: {error}")
    return finish_row(row, problems, started)


# -- the matrix --------------------------------------------------------------------------------


def run_matrix(
    device: torch.device | str,
    steps: int = 24,
    *,
    data: PreparedData | None = None,
    arch: ArchConfig = TINY_ARCH,
    batch_size: int = 64,
    cells: list[tuple[str, str | None, dict]] | None = None,
    presets: list[str] | None = None,
    fid_samples: int = 500,
    compile_backend: str | None = None,
    report: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Every cell and check on `device`; one row each (`report(row)` as each finishes).
    `compile_backend` replaces inductor in the compile cells (the CPU test: aot_eager)."""
    device = torch.device(device)
    presets = list(PRESETS) if presets is None else presets
    cells = CELLS if cells is None else cells
    if device.type == "cuda" and any(PRESETS[p].get("deterministic") for p in presets):
        claim_deterministic_cublas()  # before CUDA starts, or a ConfigError saying how
    data = matrix_data() if data is None else data
    report = report or (lambda row: None)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ugan-gpu-matrix-") as tmp, env_without(FRESH_ENV):
        workdir = Path(tmp)
        resources = {"dae_path": make_dae(arch, workdir / "dae.pt")}
        for method, loss, gan in cells:
            for preset in presets:
                rows.append(
                    train_cell(
                        method, loss, preset, device=device, data=data, arch=arch,
                        workdir=workdir, steps=steps, batch_size=batch_size,
                        resources=resources, gan=gan, compile_backend=compile_backend,
                    )
                )  # fmt: skip
                report(rows[-1])
        rows.append(cross_device_check(device, data, arch, workdir, batch_size=batch_size))
        report(rows[-1])
        scored = next(
            (r for r in rows if (r["method"], r["loss"], r["preset"]) == ("gan", "ns", "default")),
            None,
        )
        checkpoint = None
        if scored is not None and scored.get("checkpoints"):
            name = "gan-ns-default"
            checkpoint = RunLayout(workdir / name).checkpoint_path(scored["checkpoints"][-1])
        rows.append(fid_check(device, data, checkpoint, workdir, fid_samples))
        report(rows[-1])
    return rows


def main() -> int:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the point) or cpu")
    parser.add_argument("--steps", type=int, default=24, help="training steps per cell")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--fid-samples", type=int, default=500)
    parser.add_argument("--presets", nargs="+", choices=list(PRESETS), default=None)
    parser.add_argument("--methods", nargs="+", default=None, help="e.g. gan began")
    parser.add_argument(
        "--train-images",
        type=int,
        default=TRAIN_IMAGES,
        help="training images (the fewer, the more epochs roll over inside audited steps)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    cells = [c for c in CELLS if args.methods is None or c[0] in args.methods]

    def report(row: dict) -> None:
        verdict = "ok" if row["ok"] else f"FAILED: {row['error']}"
        cell = f"{row['check']} {row['method']}/{row['loss']}/{row['preset']}"
        print(f"{cell}: {verdict} ({row['seconds']} s, syncs {row.get('syncs', '-')})", flush=True)

    started = time.perf_counter()
    rows = run_matrix(
        device, args.steps, data=matrix_data(args.train_images), batch_size=args.batch_size,
        cells=cells, presets=args.presets, fid_samples=args.fid_samples, report=report,
    )  # fmt: skip
    seconds = round(time.perf_counter() - started, 1)
    print(f"\nmethod × preset matrix on {device} ({args.steps} steps per cell, {seconds} s)\n")
    print(matrix_table(rows))
    if args.json:
        record = {"machine": machine(device), "steps": args.steps, "seconds": seconds}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**record, "rows": rows}, indent=2) + "\n")
    failed = [row for row in rows if not row["ok"]]
    print(f"{len(rows) - len(failed)} / {len(rows)} ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
