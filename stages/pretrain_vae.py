"""DVC stage `pretrain_vae`: VAE whose decoder is the generator class (paper §3.3)."""

from pathlib import Path

from ugan.core.device import resolve_device
from ugan.core.io import atomic_write_json, file_digest
from ugan.core.paths import PREPARED
from ugan.data.prepared import load_prepared
from ugan.pipeline.stage import entry_point, params
from ugan.tracking.stage_run import StageRun
from ugan.training.vae import pretrain_vae


@entry_point
def main() -> None:
    p = params()
    device = resolve_device(p.device)
    data = load_prepared(PREPARED)
    arch = p.model.arch(p.data.image_size, data.shape[0], data.num_classes)
    tracked = {
        "vae": p.vae.model_dump(),
        "model": p.model.model_dump(),
        "perf": p.perf.model_dump(),
    }
    with StageRun(
        "pretrain_vae", tracked | {"device": str(device)}, experiment=p.tracking.experiment
    ) as run:
        metrics = pretrain_vae(
            p.vae, arch, data, Path("models/vae.pt"), Path("runs/vae/samples"), run,
            init_std=p.model.init_std, device=device, perf=p.perf,
            fingerprint={"data": file_digest(PREPARED)},
        )  # fmt: skip
        run.log_metrics({k: v for k, v in metrics.items() if k != "steps"})
        atomic_write_json("metrics/vae.json", metrics)


if __name__ == "__main__":
    main()
