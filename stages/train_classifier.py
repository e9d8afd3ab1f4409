"""DVC stage `train_classifier`: the evaluation feature network, trained on the train split
(on its labels, or on image rotations when the data is unlabelled)."""

from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.device import resolve_device
from ugan.core.io import atomic_write_json
from ugan.data.prepared import load_prepared
from ugan.pipeline.stage import entry_point, params
from ugan.tracking.stage_run import StageRun
from ugan.training.classifier import train_classifier


@entry_point
def main() -> None:
    p = params()
    device = resolve_device(p.device)
    data = load_prepared("data/prepared/dataset.npz")
    tracked = {"classifier": p.classifier.model_dump(), "device": str(device)}
    with StageRun("train_classifier", tracked, experiment=p.tracking.experiment) as run:
        model, metrics = train_classifier(p.classifier, data, run, device)
        save_checkpoint("models/classifier.pt", model.to_payload(metrics=metrics))
        atomic_write_json("metrics/classifier.json", metrics)


if __name__ == "__main__":
    main()
