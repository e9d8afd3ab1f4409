"""DVC stage `evaluate@<run>`: IS / FID / KID per checkpoint, floor and loss statistics."""

from pathlib import Path

from ugan.core.paths import PREPARED
from ugan.core.runtime import resolve_device
from ugan.data.prepared import load_prepared
from ugan.evaluation.evaluate import evaluate_run
from ugan.pipeline.stage import entry_point, params
from ugan.tracking.stage_run import StageRun


@entry_point
def main(run_key: str) -> None:
    p = params()
    run = p.run(run_key)
    device = resolve_device(p.device)
    data = load_prepared(PREPARED)
    tracked = {"eval": p.eval.model_dump(), "device": str(device)}
    with StageRun(
        "evaluate", tracked, run_key=run_key, experiment=p.tracking.experiment
    ) as tracker:
        tags = {"ugan.init": run.init, "ugan.loss": run.gan.loss, "ugan.method": run.gan.method}
        tracker.set_tags(tags)
        evaluate_run(
            run_key,
            run,
            p.eval,
            data,
            Path("models/classifier.pt"),
            Path("runs"),
            Path("evaluation") / run_key,
            tracker,
            device=device,
        )


if __name__ == "__main__":
    main()
