"""Run one mode-coverage benchmark: every variant × seed through the shared training loop,
then score its generator at every checkpoint kept (`ugan.modebench.trajectory`; the last is the
cell's score) on `num_samples` samples and aggregate over seeds.

Layout under `modes/<name>/`:
- `vae-s<seed>.pt`, `dae-s<seed>.pt`: each seed's own VAE (for unbalanced variants; its
  decoder is the generator's init `init_vae-s<seed>.pt`, checked G(z) == Dec(z)) and DAE (for
  RFGAN), pre-trained on the benchmark's data and seeded by the seed
  (`ugan.modebench.pretrain`);
- `cells/<variant>-s<seed>/`: checkpoints, sample pictures, losses and `result.json`;
- `summary.json`: per variant and metric the mean and 95 % interval over seeds, the real
  data's score and the paper's figure where one exists.

A finished cell is reused on the next execution when its fingerprint (its params, the nets,
the data, the init file and the ugan code it can run) is unchanged, so a stage interrupted after
some cells loses none of them; an unfinished cell resumes from its last state. The cells to
train run `workers` at a time, each in its own process (`ugan.modebench.pool`); `workers: 1`
trains them one after another in this process.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ugan.core.checkpoint_io import load_checkpoint
from ugan.core.imports import closure_of, module_file
from ugan.core.io import atomic_write_json, file_digest
from ugan.core.paths import RunLayout
from ugan.evaluation.intervals import mean_ci
from ugan.methods.catalog import CATALOG
from ugan.modebench.benchmarks import BenchData
from ugan.modebench.context import Context
from ugan.modebench.order import longest_first
from ugan.modebench.pool import finished, resolve_workers, run_parallel
from ugan.modebench.pretrain import benchmark_dae, benchmark_vae, pretrained
from ugan.modebench.trajectory import aggregate as aggregate_trajectory
from ugan.nets.family import family_of
from ugan.nets.generator_file import load_generator, noise, sample
from ugan.tracking.stage_run import StageRun
from ugan.training.gan import train_gan

SCORE_SEED = 10_000  # z of the scored samples: seed + SCORE_SEED, apart from training's
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def code_digest(root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the sources a cell can run (this module's import closure, which covers the
    worker processes and the VAE / DAE pretraining): an edit there invalidates reused cells, an
    edit elsewhere (the report, the CLI) keeps them."""
    src = root.parent
    digest = hashlib.sha256()
    for module in sorted(closure_of(__name__, src)):
        path = module_file(module, src)
        digest.update(str(path.relative_to(src)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _fingerprint(
    ctx: Context, variant: str, seed: int, arch, init: dict, code: str, extra: dict
) -> str:
    cell = ctx.entry.cell(variant, seed)
    blob = {
        **extra,
        "benchmark": ctx.entry.benchmark,
        "run": cell.model_dump(),
        "arch": arch.to_dict(),
        "num_samples": ctx.entry.num_samples,
        "train_images": ctx.entry.train_images,
        "init": {k: v for k, v in init.items() if k != "state_dict"},
        "init_weights": hashlib.sha256(
            b"".join(t.cpu().numpy().tobytes() for t in init.get("state_dict", {}).values())
        ).hexdigest(),
        "code": code,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _reusable(path: Path, fingerprint: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return result if result.get("fingerprint") == fingerprint else None


@dataclass(frozen=True)
class CellInputs:
    """What every cell of one benchmark reads (pickled once per worker process)."""

    ctx: Context
    arch: object
    data: BenchData
    inits: dict[str, dict]  # "random" or "vae-s<seed>" → generator init
    resources: dict[int, dict]  # seed → its cells' resources (RFGAN's DAE)


def train_cell(shared: CellInputs, variant: str, seed: int, init: str, fingerprint: str) -> dict:
    """Train and score one cell, then write its `result.json` (with its fingerprint, for reuse).
    Runs in the stage's process or in a worker process (`ugan.modebench.pool`)."""
    s = shared
    resources = s.resources.get(seed, {})
    result = run_cell(s.ctx, variant, seed, s.arch, s.data, s.inits[init], resources)
    result["fingerprint"] = fingerprint
    atomic_write_json(s.ctx.out / "cells" / f"{variant}-s{seed}" / "result.json", result)
    return result


def score_checkpoints(bench, inputs, layout: RunLayout, seed: int, latent_dim: int, count, device):
    """{step: scores} for every generator checkpoint in `layout`, and the last one's samples
    (`count` of them, from the seed's scoring z)."""
    scores, samples = {}, None
    for step in layout.checkpoint_steps():
        generator = load_generator(layout.checkpoint_path(step), device)
        z = noise(count, latent_dim, generator.prior, seed=SCORE_SEED + seed, device=device)
        samples = sample(generator, z)
        scores[step] = bench.score(samples, inputs)
    return scores, samples


def run_cell(
    ctx: Context, variant: str, seed: int, arch, data: BenchData, init: dict, resources: dict
) -> dict:
    """Train one (variant, seed), score its final generator, write `result.json`."""
    run = ctx.entry.cell(variant, seed)
    key = f"{variant}-s{seed}"
    layout = RunLayout(ctx.out / "cells" / key)
    tracked = {
        "benchmark": ctx.entry.benchmark,
        "variant": ctx.entry.variants[variant].model_dump(exclude_none=True),
        "gan": run.gan.model_dump(),
        "arch": arch.to_dict(),
    }
    with StageRun(
        "modes", tracked, run_key=f"{ctx.name}/{key}", experiment=ctx.experiment, log_models=False
    ) as tracker:
        tracker.set_tags(
            {
                "ugan.benchmark": ctx.name,
                "ugan.variant": variant,
                "ugan.method": run.gan.method,
                "ugan.loss": run.gan.loss,
                "ugan.init": run.init,
                "ugan.seed": seed,
            }
        )
        train_gan(
            f"{ctx.name}/{key}",
            run,
            arch,
            data,
            init,
            layout.root,
            tracker,
            init_std=ctx.model.init_std,
            device=ctx.device,
            render=ctx.bench.render,
            resources=resources,
            store_name=f"modes/{ctx.name}/{key}",
        )
        trajectory, samples = score_checkpoints(
            ctx.bench, ctx.inputs, layout, seed, arch.latent_dim, ctx.entry.num_samples, ctx.device
        )
        for step, step_scores in trajectory.items():
            tracker.log_metrics(step_scores, step=step)
        scores = trajectory[run.gan.steps]  # the cell's score: its last step's
        picture = ctx.bench.render(samples, layout.root / "final.png")
        tracker.log_artifact(picture, "samples")
    return {
        "variant": variant,
        "seed": seed,
        "method": run.gan.method,
        "loss": run.gan.loss,
        "init": run.init,
        "steps": run.gan.steps,
        "scores": scores,
        "trajectory": [{"step": step, "scores": v} for step, v in sorted(trajectory.items())],
        "picture": str(picture),
    }


def _aggregate(ctx: Context, results: list[dict], reference: dict) -> dict:
    bench = ctx.bench
    variants = {}
    for variant in ctx.entry.variants:
        cells = [r for r in results if r["variant"] == variant]
        first = cells[0]
        stats = {}
        for metric in bench.metrics:
            # None: a cell scored before the benchmark had this metric (reused as it is)
            values = [c["scores"].get(metric) for c in cells]
            ci = mean_ci(values)
            stats[metric] = {
                "mean": ci.mean,
                "low": ci.low,
                "high": ci.high,
                "n": ci.n,
                "values": values,
            }
        figure = bench.paper.get((first["method"], first["loss"]))
        own = CATALOG[first["method"]].own_objective
        variants[variant] = {
            "method": first["method"],
            "loss": "own" if own else first["loss"],  # BEGAN ignores the run's loss
            "init": first["init"],
            "steps": first["steps"],
            "seeds": [c["seed"] for c in cells],
            "metrics": stats,
            "trajectory": aggregate_trajectory(cells, bench.metrics),
            "paper": (
                {"label": figure.label, "source": figure.source, **figure.values}
                if figure and first["init"] == "random"
                else None
            ),
            "picture": first["picture"],
        }
    return {
        "name": ctx.name,
        "benchmark": ctx.entry.benchmark,
        "metrics": list(bench.metrics),
        "higher_is_better": bench.higher_is_better,
        "num_samples": ctx.entry.num_samples,
        "reference": reference,
        "paper_source": bench.paper_source,
        "variants": variants,
    }


def random_init(arch, init_std: float) -> dict:
    """The init recipe of a cell trained from random weights (`build_method`'s generator_init)."""
    return {
        "arch": arch.to_dict(),
        "net": family_of(arch).name,
        "prior": "normal",
        "source": "random",
        "init_std": init_std,
    }


def run_benchmark(ctx: Context) -> dict:
    """Every cell of the benchmark (reusing finished ones), then the aggregate."""
    entry, bench = ctx.entry, ctx.bench
    ctx.out.mkdir(parents=True, exist_ok=True)
    data = bench.data(entry, ctx.inputs)
    arch = bench.arch(entry, ctx.model)
    code = code_digest()
    cells = [(v, s) for v in entry.variants for s in entry.seeds]
    runs = {cell: entry.cell(*cell) for cell in cells}
    # Each seed pre-trains its own VAE / DAE (seeded by it), so their variance is inside the
    # interval over seeds, as the Unbalanced GAN row's per-seed VAEs are.
    inits = {"random": random_init(arch, ctx.model.init_std)}
    for seed in sorted({s for (_, s), run in runs.items() if run.init == "vae"}):
        part = f"vae-s{seed}"
        pretrained(ctx, part, code, partial(benchmark_vae, ctx, arch, data, seed))
        inits[part] = load_checkpoint(ctx.out / f"init_{part}.pt")
    resources: dict[int, dict] = {}  # seed → what its RFGAN cells read
    for seed in sorted({s for (_, s), run in runs.items() if run.gan.method == "rfgan"}):
        make = partial(benchmark_dae, ctx, arch, data, seed)
        resources[seed] = {"dae_path": pretrained(ctx, f"dae-s{seed}", code, make)}
    dae_digests = {seed: file_digest(r["dae_path"]) for seed, r in resources.items()}  # once
    results: dict[tuple[str, int], dict] = {}
    todo: dict[tuple[str, int], tuple] = {}  # to train: (variant, seed, init, fingerprint)
    for (variant, seed), run in runs.items():
        result_path = ctx.out / "cells" / f"{variant}-s{seed}" / "result.json"
        extra = {"dae": dae_digests[seed]} if run.gan.method == "rfgan" else {}
        init = run.init if run.init == "random" else f"{run.init}-s{seed}"
        fingerprint = _fingerprint(ctx, variant, seed, arch, inits[init], code, extra)
        reused = _reusable(result_path, fingerprint)
        if reused is not None:
            print(f"modes/{ctx.name}: {variant}-s{seed} unchanged, reused")
            results[variant, seed] = reused
            continue
        todo[variant, seed] = (variant, seed, init, fingerprint)
    todo = longest_first(todo, runs)  # no worker left alone on the long cells at the end
    shared = CellInputs(ctx, arch, data, inits, resources)
    workers = resolve_workers(entry.workers, len(todo), ctx.device)
    if workers > 1:
        results |= run_parallel(
            train_cell, shared, todo, workers, f"modes/{ctx.name}", name=lambda c: f"{c[0]}-s{c[1]}"
        )
    else:
        for done, (cell, args) in enumerate(todo.items(), 1):
            start = time.perf_counter()
            results[cell] = train_cell(shared, *args)
            seconds = time.perf_counter() - start
            finished(f"modes/{ctx.name}", f"{cell[0]}-s{cell[1]}", seconds, done, len(todo))
    ordered = [results[cell] for cell in cells]  # the params' order, however they finished
    return _aggregate(ctx, ordered, bench.reference(entry, data, ctx.inputs))
