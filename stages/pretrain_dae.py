"""DVC stage `pretrain_dae`: RFGAN's denoising autoencoder (encoder = discriminator trunk,
decoder = generator) → models/dae.pt, whose frozen encoder every RFGAN run reads."""

from pathlib import Path

from ugan.core.digests import file_digest
from ugan.core.io import atomic_write_json
from ugan.core.paths import DAE_PATH
from ugan.core.runtime import resolve_device
from ugan.data.prepared import load_prepared
from ugan.pipeline.stage import entry_point, params
from ugan.tracking.stage_run import StageRun
from ugan.training.dae import pretrain_dae


@entry_point
def main() -> None:
    p = params()
    device = resolve_device(p.device)
    data_path = "data/prepared/dataset.npz"
    data = load_prepared(data_path)
    arch = p.model.arch(p.data.image_size, data.shape[0], data.num_classes)
    tracked = {"dae": p.dae.model_dump(), "model": p.model.model_dump(), "device": str(device)}
    with StageRun("pretrain_dae", tracked, experiment=p.tracking.experiment) as run:
        metrics = pretrain_dae(
            p.dae,
            arch,
            data,
            DAE_PATH,
            Path("runs/dae/samples"),
            run,
            init_std=p.model.init_std,
            device=device,
            fingerprint={"data": file_digest(data_path)},
        )
        run.log_metrics(metrics)
        atomic_write_json("metrics/dae.json", {**metrics, "steps": p.dae.steps})


if __name__ == "__main__":
    main()
