"""DVC stage `report`: ordinary vs unbalanced across runs → reports/ (markdown + figures)."""

import json
import warnings
from pathlib import Path

from ugan.pipeline.stage import entry_point, params
from ugan.reporting.assemble import FILES, build_report
from ugan.reporting.figures import FIGURES
from ugan.reporting.inputs import load_run
from ugan.tracking.stage_run import StageRun

OUT = Path("reports")
MODES = Path("metrics/modes.json")
# Figures also logged as MLflow images: the chart view of the experiment shows them next to
# the metric charts (FID of both runs of a pair on one chart, their sample grids side by side).
CHART_IMAGES = {"report/fid": FIGURES["fid"], "report/samples": FIGURES["samples"]}


def log_chart_images(tracker: StageRun) -> None:
    """The figures of CHART_IMAGES as MLflow images (step 0, the step the chart view opens on).
    Offline (a spooled run) or if the store fails here they stay plain artifacts only."""
    if tracker.offline or tracker.client is None:
        return
    from mlflow.exceptions import MlflowException
    from PIL import Image

    for key, name in CHART_IMAGES.items():
        try:
            with Image.open(OUT / name) as image:
                tracker.client.log_image(tracker.run_id, image.convert("RGB"), key=key, step=0)
        except (MlflowException, OSError) as error:
            warnings.warn(f"{name} not logged as MLflow image {key!r}: {error}", stacklevel=1)


@entry_point
def main() -> None:
    p = params()
    runs = [load_run(key, Path("runs"), Path("evaluation")) for key in p.runs]
    tracked = {"report": p.report.model_dump(), "runs": list(p.runs)}
    with StageRun("report", tracked, experiment=p.tracking.experiment) as tracker:
        summary = build_report(
            runs,
            OUT,
            early_checkpoints=p.report.early_checkpoints,
            smoothing=p.report.smoothing,
            modes=json.loads(MODES.read_text())["benchmarks"] if MODES.is_file() else None,
        )
        for pair in summary["pairs"]:
            tracker.log_metrics(
                {
                    f"{pair['unbalanced']}.early_wins": pair["unbalanced_wins_early"],
                    f"{pair['unbalanced']}.mean_early_fid": pair["mean_early_fid_unbalanced"],
                    f"{pair['ordinary']}.mean_early_fid": pair["mean_early_fid_ordinary"],
                }
            )
        for name in (*FILES.values(), *FIGURES.values()):
            tracker.log_artifact(OUT / name, "report")
        log_chart_images(tracker)


if __name__ == "__main__":
    main()
