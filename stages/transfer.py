"""DVC stage `transfer`: VAE decoder weights → generator init, proven by G(z) == Dec(z)."""

from ugan.core.errors import TransferError
from ugan.core.io import atomic_write_json, load_checkpoint, save_checkpoint
from ugan.models.transfer import max_output_difference, transfer_decoder
from ugan.nets.dcgan import ArchConfig, Generator
from ugan.nets.generator_file import generator_payload
from ugan.pipeline.stage import entry_point, params
from ugan.tracking.stage_run import StageRun


@entry_point
def main() -> None:
    p = params()
    vae = load_checkpoint("models/vae.pt")
    arch = ArchConfig(**vae["arch"])
    with StageRun(
        "transfer", {"model": p.model.model_dump()}, experiment=p.tracking.experiment
    ) as run:
        decoder = Generator(arch)
        decoder.load_state_dict(vae["decoder"])
        generator = transfer_decoder(vae["decoder"], Generator(arch))
        difference = max_output_difference(generator, decoder, arch.latent_dim)
        if difference != 0.0:
            raise TransferError(f"G(z) differs from Dec(z) by {difference:g} after the transfer")
        save_checkpoint("models/init/vae.pt", generator_payload(generator, source="vae"))
        metrics = {"max_abs_difference": difference, "tensors": len(vae["decoder"])}
        run.log_metrics(metrics)
        atomic_write_json("metrics/transfer.json", metrics)


if __name__ == "__main__":
    main()
