"""The reproduction table: each paper's central claim as a row, with the bar our numbers must
clear, the paper's figure beside ours (mean and 95 % interval over seeds), the steps, and a
verdict — reproduced / not reproduced / not comparable (with the reason).

Pure: a row is assessed from the summaries the pipeline already writes (`metrics/modes.json`
for the mode-coverage rows); `ugan reproduce` (pipeline layer) runs the profiles and writes
`metrics/reproduction.json` and `reports/reproduction.md` from what this module returns.
A row is never called reproduced on fewer seeds than its bar asks for, and a row that failed
on runs shorter than the paper's says so beside its verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ugan.core.markdown import md_table

REPRODUCED, NOT_REPRODUCED, NOT_COMPARABLE = "reproduced", "not reproduced", "not comparable"


@dataclass(frozen=True)
class Check:
    """One bar of a row: a variant's metric over seeds, and the test its statistics must pass
    (`stat` holds mean, low, high, n and the per-seed values; with `versus`, also the same
    metric's statistics of those variants, as `stat["versus"][variant]`)."""

    variant: str
    metric: str
    bar: str
    passes: Callable[[dict[str, Any]], bool]
    versus: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    name: str
    claim: str
    where: str
    profile: str | None  # profiles/<profile>.yaml; None: not runnable by `ugan reproduce`
    benchmark: str = ""  # the key of `modes:` whose summary the checks read
    checks: tuple[Check, ...] = ()
    beside: tuple[tuple[str, str], ...] = ()  # (variant, metric) shown for context, no bar
    min_seeds: int = 5
    paper_steps: int | None = None  # generator steps the paper trained, when it says
    needs: str = ""  # what a row without a CPU-sized profile needs
    target: str = "modes"  # the DVC stage (with its upstream) the profile's experiment runs
    judge: str = "modes"  # how its results are read and assessed (`ugan reproduce`'s JUDGES)
    # One experiment per VAE seed (vae.seed = gan.seed = the seed), assessed together
    vae_seeds: tuple[int, ...] = ()
    cpu_sized: bool = True  # False: `ugan reproduce` runs it only when named (a GPU runner)
    # (key, value) set on the benchmark's entry over the profile's: a longer run of another
    # row's profile (seeds, steps) without a second copy of its settings
    entry: tuple[tuple[str, Any], ...] = ()

    def variants(self) -> set[str]:
        """The benchmark variants the row reads: `ugan reproduce` trains only these."""
        return self.checked() | {variant for variant, _ in self.beside}

    def checked(self) -> set[str]:
        """The variants the bars read (a check's own and those it is compared with)."""
        return {v for c in self.checks for v in (c.variant, *c.versus)}


def mean_at_least(bound: float) -> Callable[[dict], bool]:
    return lambda stat: stat["mean"] >= bound


def mean_within(low: float, high: float) -> Callable[[dict], bool]:
    return lambda stat: low <= stat["mean"] <= high


def every_seed_at_least(bound: float) -> Callable[[dict], bool]:
    return lambda stat: min(stat["values"]) >= bound


# An ordering of variants holds when one's seeds rank above the other's at this level.
SIGNIFICANCE = 0.05


def ranked_above_p(values: list[float], others: list[float]) -> float:
    """One-sided Mann-Whitney U p-value that `values` tend above `others` (scipy, exact null
    distribution): with 3 seeds each the smallest is 1/20, every value above every other."""
    from scipy.stats import mannwhitneyu  # scipy.stats takes ~1.5 s to import: only when used

    return float(mannwhitneyu(values, others, alternative="greater", method="exact").pvalue)


def above_versus(stat: dict) -> bool:
    """Above every compared variant beyond the seeds' spread: a higher mean, and seeds ranked
    above theirs (`ranked_above_p` ≤ SIGNIFICANCE). Means alone flip with one seed where 3
    seeds spread 3× (Stacked MNIST at 2,000 steps, the same seeds and training code on two
    machines: GAAN 255.7 vs WGAN-GP 255.3 on one, 213 vs 388 on the other)."""
    return all(
        stat["mean"] > other["mean"] and other["p"] <= SIGNIFICANCE * (1 + 1e-9)
        for other in stat["versus"].values()
    )


def _versus_text(check: dict) -> str:
    """ "gaan 255.7 vs wgan-gp 255.3 (Mann-Whitney p 0.50), gan 1.0 (p 0.05)"."""
    parts = [
        f"{variant} {other['mean']:.1f} ({'Mann-Whitney ' if i == 0 else ''}p {other['p']:.2f})"
        for i, (variant, other) in enumerate(check["versus"].items())
    ]
    return f"{check['variant']} {check['mean']:.1f} vs " + ", ".join(parts)


@dataclass
class Assessment:
    row: str
    claim: str
    where: str
    verdict: str
    reason: str
    checks: list[dict] = field(default_factory=list)
    beside: list[dict] = field(default_factory=list)
    steps: int | None = None
    paper_steps: int | None = None
    seeds: list[int] = field(default_factory=list)
    # profile, experiment, commit, wall_s, command, assess_s (the seconds its judging took)
    run: dict = field(default_factory=dict)
    # 2-D rows scored at every checkpoint: the first check's metric, {variant: [[step, mean]]}
    trajectory: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def not_run(row: Row) -> Assessment:
    reason = f"not run here: needs {row.needs}" if row.needs else "not run yet"
    return Assessment(row.name, row.claim, row.where, NOT_COMPARABLE, reason)


def _stat(summary: dict, variant: str, metric: str) -> dict[str, Any]:
    found = summary["variants"][variant]
    stat = found["metrics"][metric]
    paper = (found.get("paper") or {}).get(metric, "figure only")
    numbers = {k: stat[k] for k in ("mean", "low", "high", "n", "values")}
    return {"variant": variant, "metric": metric, "paper": paper, "steps": found["steps"]} | numbers


def assess(row: Row, summaries: dict[str, dict]) -> Assessment:
    """The verdict of a mode-coverage row from `metrics/modes.json`'s `benchmarks`."""
    summary = summaries.get(row.benchmark)
    missing = sorted(row.checked() - set(summary["variants"])) if summary else []
    if summary is None or missing:
        what = f"variants {missing}" if missing else f"benchmark {row.benchmark!r}"
        return Assessment(
            row.name, row.claim, row.where, NOT_COMPARABLE, f"{what} not in the results"
        )
    checks = [
        {**_stat(summary, c.variant, c.metric), "bar": c.bar} for c in row.checks
    ]  # fmt: skip
    for check, spec in zip(checks, row.checks, strict=True):
        versus = {v: _stat(summary, v, spec.metric) for v in spec.versus}
        for other in versus.values():
            other["p"] = ranked_above_p(check["values"], other["values"])
        check["passed"] = bool(spec.passes({**check, "versus": versus}))
        if versus:
            check["versus"] = {v: {"mean": o["mean"], "p": o["p"]} for v, o in versus.items()}
    beside = [  # a metric added after a record was written is left out of that record's row
        _stat(summary, v, m)
        for v, m in row.beside
        if v in summary["variants"] and m in summary["variants"][v]["metrics"]
    ]
    first = summary["variants"][row.checks[0].variant]
    steps, seeds = first["steps"], first["seeds"]
    fewest = min(c["n"] for c in checks)
    if fewest < row.min_seeds:
        verdict = NOT_COMPARABLE
        reason = f"{fewest} seeds; the bar asks for ≥ {row.min_seeds}"
    elif all(c["passed"] for c in checks):
        verdict, reason = REPRODUCED, "every bar met"
    else:
        missed = [c for c in checks if not c["passed"]]
        failed = [f"{c['variant']} {c['metric']} {c['bar']}" for c in missed]
        verdict, reason = NOT_REPRODUCED, "missed: " + "; ".join(failed)
        # the steps of a bar met say nothing about the miss
        if row.paper_steps and min(c["steps"] for c in missed) < row.paper_steps:
            reason += f" — at {_steps_of(missed)}, the paper trained ~{row.paper_steps:,}"
    if compared := [_versus_text(c) for c in checks if "versus" in c]:
        reason += " (" + "; ".join(compared) + ")"
    metric = row.checks[0].metric
    trajectory = {}
    for variant in sorted(row.variants() & set(summary["variants"])):
        points = summary["variants"][variant].get("trajectory", {}).get(metric, [])
        if len(points) > 1:
            trajectory[variant] = [[p["step"], p["mean"]] for p in points]
    return Assessment(
        row.name, row.claim, row.where, verdict, reason, checks, beside,
        steps, row.paper_steps, seeds, trajectory=trajectory,
    )  # fmt: skip


def _steps_of(checks: list[dict]) -> str:
    """ "5,000 steps", or each variant's when they differ ("wgan-gp 10,000, gan 50,000 steps")."""
    steps = {c["variant"]: c["steps"] for c in checks}
    if len(set(steps.values())) == 1:
        return f"{next(iter(steps.values())):,} steps"
    return ", ".join(f"{variant} {n:,}" for variant, n in steps.items()) + " steps"


def _ours(stat: dict) -> str:
    if "shown" in stat:
        return stat["shown"]
    values = ", ".join(f"{v:g}" for v in stat["values"])
    d = _decimals((stat["high"] - stat["low"]) / 2)
    return (
        f"{stat['mean']:.{d}f} [{stat['low']:.{d}f}, {stat['high']:.{d}f}] "
        f"(n={stat['n']}: {values})"
    )


def _decimals(half_width: float) -> int:
    """Enough decimals that the interval's half-width shows two significant digits (at least
    2, at most 6): a D-loss difference of 0.0008 ± 0.0029 would read 0.00 [-0.00, 0.00]."""
    if not math.isfinite(half_width) or half_width <= 0:
        return 2
    return min(6, max(2, 1 - math.floor(math.log10(half_width))))


def _trajectory_lines(row: dict) -> list[str]:
    """A sub-item per variant scored at every checkpoint: its mean at each step, in order."""
    metric = row["checks"][0]["metric"] if row.get("checks") else ""
    return [
        f"  - {variant} {metric} at steps {points[0][0]:,}–{points[-1][0]:,} (mean over seeds): "
        + " → ".join(f"{mean:.1f}" for _, mean in points)
        for variant, points in (row.get("trajectory") or {}).items()
    ]


def markdown(rows: list[dict]) -> str:
    """The report section: one line per check (a row has one or more), then each row's
    verdict with its reason and the command and experiment behind it."""
    header = ["row", "paper claim", "check", "bar", "paper", "ours: mean [95 % CI]", "steps"]
    lines = []
    for row in rows:
        for check in row["checks"] + [{**b, "bar": "(beside)"} for b in row["beside"]]:
            mark = {True: " ✓", False: " ✗"}.get(check.get("passed"), "")
            lines.append([
                row["row"], f"{row['claim']} ({row['where']})",
                f"{check['variant']} {check.get('label', check['metric'])}", check["bar"] + mark,
                check["paper"], _ours(check), f"{check.get('steps', row['steps']):,}",
            ])  # fmt: skip
        if not row["checks"]:
            lines.append([row["row"], f"{row['claim']} ({row['where']})", "—", "—", "—", "—", "—"])
    verdicts = []
    for row in rows:
        run = row.get("run") or {}
        experiments = run.get("experiment", "").split(", ")
        how = (
            f" `{run['command']}`, experiment `{run['experiment']}` at commit "
            + ", ".join(f"`{commit[:12]}`" for commit in run["commit"].split(", "))
            + f", {run['wall_s'] / 60:.1f} min"
            + (f" (the sum of the {len(experiments)} experiments')" if len(experiments) > 1 else "")
            + (f", then {run['assess_s']:.0f} s to assess" if run.get("assess_s", 0) >= 10 else "")
            + (f"; re-assessed {run['reassessed']}" if run.get("reassessed") else "")
            if run
            else ""
        )
        verdicts.append(f"- **{row['row']}: {row['verdict']}** — {row['reason']}.{how}")
        verdicts += _trajectory_lines(row)
    return md_table(header, lines, "llllllr") + "\n\n" + "\n".join(verdicts) + "\n"
