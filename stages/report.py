"""DVC stage `report`: ordinary vs unbalanced across runs → reports/ (markdown + figures)."""

import json
from pathlib import Path

from ugan.pipeline.stage import entry_point, params
from ugan.reporting.assemble import build_report
from ugan.reporting.inputs import load_run
from ugan.tracking.stage_run import StageRun

OUT = Path("reports")
MODES = Path("metrics/modes.json")


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
        for name in ("report.md", "summary.json", "fid.png", "is.png", "losses.png", "samples.png"):
            tracker.log_artifact(OUT / name, "report")


if __name__ == "__main__":
    main()
