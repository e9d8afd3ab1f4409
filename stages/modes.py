"""DVC stage `modes`: the mode-coverage benchmarks of `modes:` (2-D mixtures, Stacked MNIST)
→ modes/<name>/ (cells, pictures), metrics/modes.json and modes/table.md."""

from pathlib import Path

from ugan.core.device import resolve_device
from ugan.core.io import atomic_write_json, atomic_write_text
from ugan.modebench.benchmarks import Inputs
from ugan.modebench.runner import Context, run_benchmark
from ugan.modebench.tables import final_samples_figure, headline_curves, markdown
from ugan.pipeline.stage import entry_point, params
from ugan.tracking.stage_run import StageRun

OUT = Path("modes")
SUMMARY = Path("metrics/modes.json")


@entry_point
def main() -> None:
    p = params()
    device = resolve_device(p.device)
    summaries = {}
    for name, entry in p.modes.items():
        context = Context(name, entry, p.model, Inputs(), OUT / name, p.tracking.experiment, device)
        summaries[name] = run_benchmark(context)
    table = markdown(summaries)
    atomic_write_text(OUT / "table.md", "# Mode-coverage benchmarks\n\n" + table + "\n")
    atomic_write_json(SUMMARY, {"benchmarks": summaries})
    print(table)
    tracked = {"modes": {k: v.model_dump() for k, v in p.modes.items()}}
    with StageRun("modes", tracked, experiment=p.tracking.experiment) as tracker:
        for name, summary in summaries.items():
            tracker.log_metrics(
                {
                    f"{name}.{variant}.{metric}": stat["mean"]
                    for variant, v in summary["variants"].items()
                    for metric, stat in v["metrics"].items()
                }
            )
        tracker.log_artifact(OUT / "table.md", "modes")
        if summaries:
            tracker.log_artifact(final_samples_figure(summaries, OUT / "samples.png"), "modes")
            curves = headline_curves(summaries, OUT / "trajectories.png")
            if curves is not None:
                tracker.log_artifact(curves, "modes")


if __name__ == "__main__":
    main()
