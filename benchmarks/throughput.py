"""Benchmark 1 — training throughput: images/s of ugan's GAN loop
(`ugan.training.gan.train_gan`, with
tracking to a temporary sqlite MLflow store and checkpointing on) against a plain PyTorch DCGAN
loop written below in the style of pytorch/examples `dcgan/main.py`: same nets
(ugan.nets.dcgan), batch, data and device, and the same checkpoint cadence (a sample grid and
the generator's weights).

    python benchmarks/throughput.py                          # CPU; exact and default loops
    python benchmarks/throughput.py --device cuda            # + bf16/channels_last/compile

Throughput is the steady state: images between the first timestamp after the warm-up and the
last one, so set-up and the final model export are left out (they are in the end-to-end
column). ugan's loop is timed through its tracker, whose log calls come at the log cadence once
that step's losses are on the host (so the GPU's queued work is counted). Beside wall-clock
images/s, images per CPU-second of the process are reported: on a CPU shared with other work
(run with `--threads 1`) they compare the two loops' work where wall time mostly measures the
neighbours.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import ROOT, arguments, machine, mnist, report, table
from torch import nn
from torchvision.utils import save_image

# ugan loop presets: `perf:` settings (see src/ugan/training/accel.py)
PRESETS: dict[str, dict] = {
    "exact": {"fused_optim": False, "loss_sync": "step"},  # no speed policy at all
    "default": {},  # fused Adam; losses synced at the log cadence on CUDA
    "bf16": {"precision": "bf16"},
    "fast": {"precision": "bf16", "channels_last": True},
    "fast+compile": {"precision": "bf16", "channels_last": True, "compile": True},
}
DEFAULT_PRESETS = {
    "cpu": ["exact", "default"],
    "cuda": ["exact", "default", "fast", "fast+compile"],
}


def mark(step: int) -> tuple[int, float, float]:
    """(step, wall-clock s, CPU s of this process)."""
    return step, time.perf_counter(), time.process_time()


class StepClock:
    """A tracker proxy that timestamps every log call that carries a step."""

    def __init__(self, tracker):
        self.tracker = tracker
        self.marks: list[tuple[int, float, float]] = []

    def __getattr__(self, name: str):
        return getattr(self.tracker, name)

    def log_metrics(self, metrics, step=None) -> None:
        if step is not None:
            self.marks.append(mark(step))
        self.tracker.log_metrics(metrics, step=step)


def steady_rates(marks: list[tuple[int, float, float]], batch: int, warmup: int) -> dict:
    """images per second and per CPU-second between the first mark at or after step `warmup`
    and the last mark."""
    window = [m for m in marks if m[0] >= warmup]
    (s0, wall0, cpu0), (s1, wall1, cpu1) = window[0], window[-1]
    images = batch * (s1 - s0)
    return {"images_per_s": images / (wall1 - wall0), "images_per_cpu_s": images / (cpu1 - cpu0)}


# -- the reference: pytorch/examples dcgan/main.py, on ugan's nets -------------------------


def reference_loop(arch, images: np.ndarray, cfg, device, out: Path) -> list[tuple[int, float]]:
    from ugan.nets.dcgan import Discriminator, Generator, init_weights

    torch.manual_seed(cfg.seed)
    data = torch.from_numpy(images).float().div(127.5).sub(1.0)  # ToTensor + Normalize(0.5, 0.5)
    dataset = torch.utils.data.TensorDataset(data)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True
    )
    net_g, net_d = Generator(arch).to(device), Discriminator(arch).to(device)
    init_weights(net_g)
    init_weights(net_d)
    criterion = nn.BCEWithLogitsLoss()  # ugan's D ends in a logit: BCELoss∘sigmoid, stable
    betas = (cfg.optim.beta1, cfg.optim.beta2)
    optimizer_d = torch.optim.Adam(net_d.parameters(), lr=cfg.optim.lr, betas=betas)
    optimizer_g = torch.optim.Adam(net_g.parameters(), lr=cfg.optim.lr, betas=betas)
    fixed_noise = torch.randn(cfg.num_sample_images, arch.latent_dim, device=device)
    marks, losses, step = [], [], 0
    while step < cfg.steps:
        for (real_cpu,) in loader:
            # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
            net_d.zero_grad()
            real = real_cpu.to(device)
            b = real.size(0)
            label = torch.full((b,), 1.0, device=device)
            output = net_d(real)
            err_d_real = criterion(output, label)
            err_d_real.backward()
            d_x = output.mean().item()
            noise = torch.randn(b, arch.latent_dim, device=device)
            fake = net_g(noise)
            label.fill_(0.0)
            output = net_d(fake.detach())
            err_d_fake = criterion(output, label)
            err_d_fake.backward()
            d_g_z1 = output.mean().item()
            err_d = err_d_real + err_d_fake
            optimizer_d.step()
            # (2) Update G network: maximize log(D(G(z)))
            net_g.zero_grad()
            label.fill_(1.0)
            output = net_d(fake)
            err_g = criterion(output, label)
            err_g.backward()
            d_g_z2 = output.mean().item()
            optimizer_g.step()
            losses.append((err_d.item(), err_g.item(), d_x, d_g_z1, d_g_z2))  # the example prints
            step += 1
            marks.append(mark(step))
            if step % cfg.checkpoint_every == 0:
                with torch.no_grad():
                    save_image(net_g(fixed_noise), out / f"fake_{step:06d}.png", normalize=True)
                torch.save(net_g.state_dict(), out / f"netG_{step:06d}.pth")
            if step == cfg.steps:
                break
    return marks


# -- ugan's loop ---------------------------------------------------------------------------


def ugan_loop(arch, data, run, device, perf, out: Path) -> list[tuple[int, float]]:
    from ugan.tracking.stage_run import StageRun
    from ugan.training.gan import train_gan

    recipe = {"arch": arch.to_dict(), "net": "dcgan", "source": "random", "init_std": 0.02}
    with StageRun("train_gan", {"gan": run.gan.model_dump()}, run_key=out.name) as tracker:
        clock = StepClock(tracker)
        train_gan(
            out.name,
            run,
            arch,
            data,
            recipe,
            out,
            clock,
            device=device,
            resume_root=out / "resume",
            perf=perf,
        )
    return clock.marks


def measure(name: str, loop: Callable[[], list], batch: int, warmup: int) -> dict:
    start = time.perf_counter()
    marks = loop()
    total = time.perf_counter() - start
    return {"loop": name, **steady_rates(marks, batch, warmup), "end_to_end_s": total}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=None, help="default: params.yaml")
    parser.add_argument("--image-size", type=int, default=28, choices=(28, 32, 64))
    parser.add_argument("--checkpoint-every", type=int, default=None, help="default: params")
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=None)
    parser.add_argument("--repeat", type=int, default=1, help="best of N rounds (noisy hosts)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from ugan.config.load import load_params, parse_params
    from ugan.config.schema import PerfParams
    from ugan.core.device import resolve_device

    device = resolve_device(args.device)
    params = load_params(ROOT / "params.yaml")
    gan = params.gan.model_dump() | {"steps": args.steps}
    gan["batch_size"] = args.batch_size or gan["batch_size"]
    gan["checkpoint_every"] = min(args.checkpoint_every or gan["checkpoint_every"], args.steps)
    run = parse_params({"gan": gan, "runs": {"bench": {"init": "random"}}}).run("bench")
    data = mnist(args.image_size)
    arch = params.model.arch(args.image_size, data.shape[0])
    warmup = max(2 * run.gan.log_every, args.steps // 10)
    presets = args.presets or DEFAULT_PRESETS[device.type]

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # resume state, spool and checkpoints stay in the temporary folder
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        for round_ in range(args.repeat):
            out = Path(tmp) / f"reference{round_}"
            out.mkdir()
            loops = {
                "reference (pytorch/examples style)": lambda o=out: reference_loop(
                    arch, data.train[0], run.gan, device, o
                )
            }
            for name in presets:
                perf = PerfParams(**PRESETS[name])
                folder = Path(tmp) / f"{name}{round_}"
                loops[f"ugan train_gan [{name}]"] = lambda p=perf, f=folder: ugan_loop(
                    arch, data, run, device, p, f
                )
            for name, loop in loops.items():
                figure = measure(name, loop, run.gan.batch_size, warmup)
                best = results.setdefault(name, figure)
                for key in ("images_per_s", "images_per_cpu_s"):  # the best round of each
                    best[key] = max(best[key], figure[key])
                best["end_to_end_s"] = min(best["end_to_end_s"], figure["end_to_end_s"])
                print(
                    f"  {name}: {figure['images_per_s']:.0f} images/s, "
                    f"{figure['images_per_cpu_s']:.0f} images/CPU-s",
                    flush=True,
                )
    reference = next(iter(results.values()))
    for figure in results.values():
        figure["ratio"] = figure["images_per_s"] / reference["images_per_s"]
        figure["cpu_ratio"] = figure["images_per_cpu_s"] / reference["images_per_cpu_s"]
    print(
        f"\nTraining throughput, {args.image_size}px, batch {run.gan.batch_size}, "
        f"{args.steps} steps (steady state from step {warmup}), checkpoint every "
        f"{run.gan.checkpoint_every}, log every {run.gan.log_every}\n"
    )
    print(
        table(
            ["loop", "images/s", "× reference", "images/CPU-s", "× reference", "end-to-end s"],
            [
                [
                    n,
                    f"{f['images_per_s']:.0f}",
                    f"{f['ratio']:.2f}",
                    f"{f['images_per_cpu_s']:.0f}",
                    f"{f['cpu_ratio']:.2f}",
                    f"{f['end_to_end_s']:.1f}",
                ]
                for n, f in results.items()
            ],
        )
    )
    settings = {
        "image_size": args.image_size,
        "batch_size": run.gan.batch_size,
        "steps": args.steps,
        "checkpoint_every": run.gan.checkpoint_every,
        "log_every": run.gan.log_every,
        "warmup_steps": warmup,
        "torch_threads": torch.get_num_threads(),
        "rounds": args.repeat,
    }
    report(args, "throughput", machine(device), {"settings": settings, "loops": results})


if __name__ == "__main__":
    main()
