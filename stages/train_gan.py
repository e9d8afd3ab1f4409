"""DVC stage `train_gan@<run>`: one run of `runs:` (ordinary or unbalanced) → runs/<run>/."""

from pathlib import Path

from ugan.core.digests import file_digest
from ugan.core.io import load_checkpoint
from ugan.core.runtime import resolve_device
from ugan.data.prepared import load_prepared
from ugan.pipeline.stage import entry_point, params
from ugan.tracking.stage_run import StageRun
from ugan.training.gan import train_gan


@entry_point
def main(run_key: str) -> None:
    p = params()
    run = p.run(run_key)
    device = resolve_device(p.device)
    init_path, data_path = f"models/init/{run.init}.pt", "data/prepared/dataset.npz"
    init = load_checkpoint(init_path)
    data = load_prepared(data_path)
    arch = p.model.arch(p.data.image_size, data.shape[0], data.num_classes)
    tracked = {
        "run": p.runs[run_key].model_dump(exclude_none=True),
        "gan": run.gan.model_dump(),
        "model": p.model.model_dump(),
        "device": str(device),
    }
    with StageRun(
        "train_gan",
        tracked,
        run_key=run_key,
        experiment=p.tracking.experiment,
        log_models=p.tracking.log_models,
    ) as tracker:
        tracker.set_tags({"ugan.init": run.init, "ugan.loss": run.gan.loss, "ugan.method": "gan"})
        train_gan(
            run_key,
            run,
            arch,
            data,
            init,
            Path("runs") / run_key,
            tracker,
            init_std=p.model.init_std,
            device=device,
            fingerprint={"data": file_digest(data_path), "init_file": file_digest(init_path)},
        )


if __name__ == "__main__":
    main()
