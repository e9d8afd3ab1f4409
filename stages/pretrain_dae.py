"""DVC stage `pretrain_dae`: RFGAN's denoising autoencoder (encoder = discriminator trunk,
decoder = generator) → models/dae.pt, whose frozen encoder every RFGAN run reads. When no run of
`runs:` uses rfgan it trains nothing and writes a marker that says so."""

from pathlib import Path

from ugan.core.device import resolve_device
from ugan.core.io import atomic_write_json, file_digest
from ugan.core.paths import DAE_PATH, PREPARED
from ugan.data.prepared import load_prepared
from ugan.pipeline.stage import entry_point, params
from ugan.tracking.stage_run import StageRun
from ugan.training.dae import pretrain_dae, skip_pretraining

SAMPLES = Path("runs/dae/samples")


@entry_point
def main() -> None:
    p = params()
    device = resolve_device(p.device)
    tracked = {"dae": p.dae.model_dump(), "model": p.model.model_dump(), "device": str(device)}
    tracked["perf"] = p.perf.model_dump()
    with StageRun("pretrain_dae", tracked, experiment=p.tracking.experiment) as run:
        if not any(p.run(key).gan.method == "rfgan" for key in p.runs):
            atomic_write_json("metrics/dae.json", skip_pretraining(DAE_PATH, SAMPLES, run))
            return
        data = load_prepared(PREPARED)
        arch = p.model.arch(p.data.image_size, data.shape[0], data.num_classes)
        metrics = pretrain_dae(
            p.dae, arch, data, DAE_PATH, SAMPLES, run, init_std=p.model.init_std, device=device,
            perf=p.perf, fingerprint={"data": file_digest(PREPARED)},
        )  # fmt: skip
        run.log_metrics(metrics)
        atomic_write_json("metrics/dae.json", {**metrics, "steps": p.dae.steps})


if __name__ == "__main__":
    main()
