"""DVC stage `transfer`: VAE decoder weights → generator init, proven by G(z) == Dec(z)."""

from ugan.core.checkpoint_io import load_checkpoint, save_checkpoint
from ugan.core.errors import InputError, TransferError
from ugan.core.io import atomic_write_json
from ugan.models.transfer import max_output_difference, transfer_decoder
from ugan.nets.arch import ArchConfig
from ugan.nets.dcgan import Generator
from ugan.nets.generator_file import generator_payload
from ugan.pipeline.stage import entry_point, params
from ugan.tracking.stage_run import StageRun

VAE_FILE = "models/vae.pt"
RERUN = "the file is corrupt or from another version: rerun `dvc repro pretrain_vae`"


def vae_arch(vae: dict) -> ArchConfig:
    """The architecture a VAE file declares; a file without one (or a decoder) is named."""
    missing = [key for key in ("arch", "decoder") if not isinstance(vae.get(key), dict)]
    if missing:
        raise InputError(f"{VAE_FILE}: no {' or '.join(map(repr, missing))} in it; {RERUN}")
    try:
        return ArchConfig(**vae["arch"])
    except TypeError as exc:
        raise InputError(
            f"{VAE_FILE}: its `arch` {vae['arch']} is no ArchConfig ({exc}); {RERUN}"
        ) from exc


@entry_point
def main() -> None:
    p = params()
    vae = load_checkpoint(VAE_FILE)
    arch = vae_arch(vae)
    try:  # all or nothing, the first tensor that does not fit named
        generator = transfer_decoder(vae["decoder"], Generator(arch))
    except TransferError as exc:
        raise TransferError(f"{VAE_FILE}: {exc}; {RERUN}") from exc
    decoder = Generator(arch)
    decoder.load_state_dict(vae["decoder"])
    with StageRun(
        "transfer", {"model": p.model.model_dump()}, experiment=p.tracking.experiment
    ) as run:
        difference = max_output_difference(generator, decoder, arch.latent_dim)
        if difference != 0.0:
            raise TransferError(f"G(z) differs from Dec(z) by {difference:g} after the transfer")
        save_checkpoint("models/init/vae.pt", generator_payload(generator, source="vae"))
        metrics = {"max_abs_difference": difference, "tensors": len(vae["decoder"])}
        run.log_metrics(metrics)
        atomic_write_json("metrics/transfer.json", metrics)


if __name__ == "__main__":
    main()
