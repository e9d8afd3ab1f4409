"""DVC stage `prepare`: a dataset source → data/prepared/dataset.npz (train / held-out split)."""

from ugan.core.io import atomic_write_json
from ugan.data.prepared import save_prepared
from ugan.data.sources import prepare
from ugan.pipeline.stage import entry_point, params
from ugan.tracking.stage_run import StageRun

OUT = "data/prepared/dataset.npz"


@entry_point
def main() -> None:
    p = params()
    with StageRun(
        "prepare", {"data": p.data.model_dump()}, experiment=p.tracking.experiment
    ) as run:
        data = prepare(
            p.data.source,
            p.data.image_size,
            p.data.heldout_fraction,
            p.data.seed,
            path=p.data.path,
            labels_from_subfolders=p.data.labels_from_subfolders,
        )
        save_prepared(OUT, data)
        atomic_write_json("data/prepared/summary.json", data.metadata)
        run.log_metrics({f"count_{k}": v for k, v in data.metadata["count"].items()})


if __name__ == "__main__":
    main()
