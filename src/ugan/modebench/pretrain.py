"""The benchmark's own pretrained parts, one per seed (seeded by it): a VAE (its decoder the
unbalanced variants' generator init) and RFGAN's DAE, each trained on the benchmark's data as
its own MLflow run and reused while its marker says it was made by this code from these
params."""

from __future__ import annotations

import json
from pathlib import Path

from ugan.config.schema import DAEParams, VAEParams
from ugan.core.checkpoint_io import load_checkpoint, save_checkpoint
from ugan.core.errors import TransferError
from ugan.core.io import atomic_write_json
from ugan.modebench.benchmarks import BenchData
from ugan.modebench.context import Context
from ugan.models.transfer import max_output_difference, transfer_decoder
from ugan.nets.family import family_of
from ugan.nets.generator_file import generator_payload
from ugan.tracking.stage_run import StageRun
from ugan.training.dae import pretrain_dae
from ugan.training.vae import pretrain_vae


def _pretrain(ctx: Context, part: str, train, params, arch, data: BenchData, **extra) -> Path:
    """Run `train` (pretrain_vae / pretrain_dae) on the benchmark's data as its own MLflow run;
    returns `modes/<name>/<part>.pt` (`part`: vae-s<seed> / dae-s<seed>)."""
    tracked = {part: params.model_dump(), "benchmark": ctx.name, "arch": arch.to_dict()}
    path = ctx.out / f"{part}.pt"
    with StageRun("modes", tracked, run_key=f"{ctx.name}/{part}", experiment=ctx.experiment) as run:
        run.set_tags({"ugan.benchmark": ctx.name, "ugan.part": part})
        metrics = train(
            params,
            arch,
            data,
            path,
            ctx.out / f"{part}_samples",
            run,
            init_std=ctx.model.init_std,
            device=ctx.device,
            render=ctx.bench.render,
            store_name=f"modes/{ctx.name}/{part}",
            **extra,
        )
        run.log_metrics(metrics)
    return path


def _part_params(params_class, entry, seed: int, **extra):
    """A part's pretraining params from the benchmark entry: its steps, batch and optimizer,
    one sample picture at the end, the cell's seed."""
    return params_class(
        seed=seed,
        steps=entry.pretrain_steps,
        batch_size=entry.batch_size,
        optim=entry.optim,
        sample_every=entry.pretrain_steps,
        **extra,
    )


def benchmark_vae(ctx: Context, arch, data: BenchData, seed: int) -> None:
    """Seed `seed`'s VAE, then its decoder as a generator init (transfer, checked)."""
    entry = ctx.entry
    params = _part_params(VAEParams, entry, seed)
    points = data.train[0].ndim == 2  # a scatter of 64 points says little: show num_samples
    path = _pretrain(
        ctx,
        f"vae-s{seed}",
        pretrain_vae,
        params,
        arch,
        data,
        num_samples=entry.num_samples if points else 64,
    )
    nets = family_of(arch)
    decoder_state = load_checkpoint(path)["decoder"]
    decoder = nets.generator(arch)
    decoder.load_state_dict(decoder_state)
    generator = transfer_decoder(decoder_state, nets.generator(arch))
    difference = max_output_difference(generator, decoder, arch.latent_dim)
    if difference != 0.0:
        raise TransferError(f"G(z) differs from Dec(z) by {difference:g} after the transfer")
    save_checkpoint(ctx.out / f"init_vae-s{seed}.pt", generator_payload(generator, source="vae"))


def benchmark_dae(ctx: Context, arch, data: BenchData, seed: int) -> None:
    """Seed `seed`'s denoising autoencoder (RFGAN's frozen encoder)."""
    params = _part_params(DAEParams, ctx.entry, seed, noise_std=ctx.entry.dae_noise_std)
    _pretrain(ctx, f"dae-s{seed}", pretrain_dae, params, arch, data)


def _identity(ctx: Context, part: str, code: str) -> dict:
    """What a pre-trained VAE / DAE of this benchmark depends on."""
    e = ctx.entry
    return {
        "part": part,
        "benchmark": e.benchmark,
        "steps": e.pretrain_steps,
        "batch": e.batch_size,
        "optim": e.optim.model_dump(),
        "train_images": e.train_images,
        "base_channels": e.base_channels,
        "nets": e.nets,
        "mlp": e.mlp.model_dump(),  # the 2-D nets: same shapes may still be other coordinates
        "dae_noise_std": e.dae_noise_std if part.startswith("dae") else None,
        "model": ctx.model.model_dump(),
        "code": code,
    }


def pretrained(ctx: Context, part: str, code: str, train) -> Path:
    """`modes/<name>/<part>.pt`, trained by `train()` unless the file on disk was made by this
    code from these params (its marker `<part>.json` says so)."""
    path, marker = ctx.out / f"{part}.pt", ctx.out / f"{part}.json"
    identity = _identity(ctx, part, code)
    if path.is_file() and marker.is_file() and json.loads(marker.read_text()) == identity:
        print(f"modes/{ctx.name}: {part} unchanged, reused")
        return path
    marker.unlink(missing_ok=True)
    train()
    atomic_write_json(marker, identity)
    return path
