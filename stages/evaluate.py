"""DVC stage `evaluate@<run>`: IS / FID / KID per checkpoint, floor and loss statistics."""

from pathlib import Path

from ugan.core.device import resolve_device
from ugan.core.paths import PREPARED
from ugan.data.prepared import load_prepared
from ugan.evaluation.evaluate import evaluate_run
from ugan.pipeline.stage import entry_point, params, run_key
from ugan.tracking.stage_run import StageRun


@entry_point
def main(*argv: str) -> None:
    p = params()
    key = run_key(argv, "evaluate")
    run = p.run(key)
    device = resolve_device(p.device)
    data = load_prepared(PREPARED)
    tracked = {"eval": p.eval.model_dump(), "device": str(device)}
    with StageRun("evaluate", tracked, run_key=key, experiment=p.tracking.experiment) as tracker:
        tags = {"ugan.init": run.init, "ugan.loss": run.gan.loss, "ugan.method": run.gan.method}
        tracker.set_tags(tags)
        evaluate_run(
            key,
            run,
            p.eval,
            data,
            Path("models/classifier.pt"),
            Path("runs"),
            Path("evaluation") / key,
            tracker,
            device=device,
        )


if __name__ == "__main__":
    main()
