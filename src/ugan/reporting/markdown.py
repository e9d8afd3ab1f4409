"""report.md: the report's markdown, one section after the other.

`render_report` assembles, in this order: the title and the verdicts at a glance, the paper's
claims across seeds, the runs, the final numbers, the floor, FID / IS / KID at each checkpoint,
loss stability, the samples, one verdict section per (ordinary, unbalanced) pair, the method and
init combinations, and (when configured) the mode-coverage benchmarks. Every number comes from
`ugan.reporting.comparisons` and is written by `ugan.reporting.formatting`; the figures are
linked by their file names in `FIGURES`. Pure: nothing is read or written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ugan.core.markdown import md_table
from ugan.methods.catalog import combinations_markdown
from ugan.reporting.claims import claims_cells
from ugan.reporting.comparisons import (
    best_fid,
    final_numbers,
    floor_numbers,
    isc_unavailable,
    role,
    verdict_line,
)
from ugan.reporting.figures import FIGURES
from ugan.reporting.formatting import DASH, NA, finite, fmt, fmt_pm, fmt_step
from ugan.reporting.inputs import LoadedRun
from ugan.reporting.prdc import prdc_section
from ugan.reporting.scoring import fid_text, sample_count, scoring_note, scoring_section


def render_report(
    runs: list[LoadedRun],
    comparisons: list[dict[str, Any]],
    claims: list[dict],
    unpaired: list[str],
    early_checkpoints: int,
    smoothing: int,
    left_out: list[LoadedRun] | None = None,
) -> str:
    """report.md's text; `runs` in report order, `claims` from `claims_table`, `left_out` runs
    scored unlike `runs` (listed, not compared). The mode-coverage section is
    `ugan.reporting.modes_section`'s."""
    notes = [n for n in (_isc_note(runs), scoring_note(runs, left_out or [])) if n]
    lines = [
        *_glance_section(comparisons, unpaired, "\n\n".join(notes) or None),
        *_claims_section(claims),
        *scoring_section(runs, left_out or []),
        *_runs_section(runs),
        *_final_section(runs),
        *prdc_section(runs),
        *_floor_section(runs),
        *_checkpoint_sections(runs),
        *_loss_and_samples_sections(runs, smoothing),
        *_verdict_sections(comparisons, early_checkpoints),
    ]
    text = "\n".join(lines).rstrip() + "\n"
    text += (
        "\n## Which method and init combinations exist\n\n"
        "Unbalanced initialisation (the VAE decoder's weights) applies to every method whose "
        "generator has a VAE-decoder twin; a run with another combination is a config error.\n\n"
        + combinations_markdown()
        + "\n"
    )
    return text


def _isc_note(runs: list[LoadedRun]) -> str | None:
    """The report's line on a missing Inception Score, or None when every run has one."""
    reasons = {r.key: isc_unavailable(r) for r in runs}
    missing = [k for k, reason in reasons.items() if reason]
    if not missing:
        return None
    which = "" if len(missing) == len(runs) else " of " + ", ".join(f"`{k}`" for k in missing)
    return f"**Inception Score (IS){which}: {reasons[missing[0]]}.**"


def _glance_section(
    comparisons: list[dict[str, Any]], unpaired: list[str], isc_note: str | None = None
) -> list[str]:
    """The title and one line per pair, then a blank line before the next heading."""
    out: list[str] = ["# Unbalanced GANs vs ordinary GANs — report", ""]
    out += [
        (
            "Ordinary = generator from random init; unbalanced = generator initialised from "
            "the pre-trained VAE decoder (Ham, Jun & Kim 2020)."
        ),
        "",
        *([isc_note, ""] if isc_note else []),
        "## Verdicts at a glance",
        "",
    ]
    if comparisons:
        for cmp in comparisons:
            std = (
                "lower"
                if cmp["d_loss_std_lower"] and cmp["g_loss_std_lower"]
                else "lower for D only"
                if cmp["d_loss_std_lower"]
                else "lower for G only"
                if cmp["g_loss_std_lower"]
                else "not lower"
            )
            out.append(
                f"- `{cmp['unbalanced']}` vs `{cmp['ordinary']}`: {verdict_line(cmp)} "
                f"Loss std {std}."
            )
    else:
        out.append(
            "No (ordinary, unbalanced) pair among these runs (a pair needs the same method and "
            "loss with init random vs vae), so no verdict is given."
        )
    if unpaired:
        out.append(f"- Runs without a pair: {', '.join(f'`{k}`' for k in unpaired)}.")
    return [*out, ""]


def _claims_section(claims: list[dict]) -> list[str]:
    """The claims go right after the verdicts at a glance, where a reader looks first."""
    return [
        "## Claims of the paper, across seeds",
        "",
        "Per seed, the difference between the paired runs, oriented so that a positive value "
        "(a ratio above 1 for convergence) favours unbalanced; mean and 95 % confidence interval "
        "over seeds (Student's t). A claim holds only when the whole interval is on its side.",
        "",
        md_table(*claims_cells(claims)) if claims else "No (ordinary, unbalanced) pair.",
        "",
    ]


def _runs_section(runs: list[LoadedRun]) -> list[str]:
    rows = []
    for run in runs:
        last_loss = int(run.loss_steps[-1]) if len(run.loss_steps) else None
        rows.append(
            [
                run.key,
                run.info.method,
                run.info.loss,
                f"{run.info.init} ({role(run.info.init)})",
                fmt_step(last_loss) if last_loss is not None else DASH,
                str(len(run.fid_steps)),
                str(len(run.samples)),
            ]
        )
    return [
        "## Runs",
        "",
        md_table(
            ["run", "method", "loss", "init", "last step", "checkpoints", "sample grids"],
            rows,
            "llllrrr",
        ),
        "",
    ]


def _final_section(runs: list[LoadedRun]) -> list[str]:
    rows = []
    for run in runs:
        final = final_numbers(run)
        best, best_step = best_fid(run)
        rows.append(
            [
                run.key,
                fmt_step(final["step"]) if finite(final["step"]) else DASH,
                fid_text(run, final["fid"]),
                fid_text(run, best, at=best_step),
                NA if isc_unavailable(run) else fmt(final["isc_mean"], 2),
                fmt(final["kid_mean"], 4),
                sample_count(run),
            ]
        )
    return [
        "## Final numbers",
        "",
        md_table(
            ["run", "final step", "FID ↓", "best FID ↓ @ step", "IS ↑", "KID ↓", "N"],
            rows,
            "lrrrrrr",
        ),
        "",
    ]


def _floor_section(runs: list[LoadedRun]) -> list[str]:
    """One row for all runs when they share the floor, else one row per run."""
    floors = [(floor_numbers(r), r.key, isc_unavailable(r)) for r in runs]
    distinct = {
        (tuple(round(v, 9) if finite(v) else None for v in f.values()), bool(no_is))
        for f, _, no_is in floors
    }

    def row(label: str, f: dict, no_is: str | None) -> list[str]:
        isc = NA if no_is else fmt(f["isc_mean"], 2)
        return [label, fid_text(runs[0], f["fid"]), isc, fmt(f["kid_mean"], 4)]  # runs share N

    if len(distinct) == 1:
        rows = [row("all runs", floors[0][0], floors[0][2])]
    else:
        rows = [row(k, f, no_is) for f, k, no_is in floors]
    return [
        "## Floor (held-out vs train)",
        "",
        (
            "What real data scores: FID / KID of the held-out split against the train split, "
            "IS of the held-out split. No generator should be expected to beat it."
        ),
        "",
        md_table(["", "FID", "IS", "KID"], rows, "lrrr"),
        "",
    ]


def _metric_table(runs: list[LoadedRun], cell: Callable[[LoadedRun, int], str]) -> str:
    """A row per checkpoint step of any run, a column per run; `cell(run, row index)`."""
    steps = sorted({int(s) for r in runs for s in r.fid_steps})
    rows = []
    for step in steps:
        row = [fmt_step(step)]
        for run in runs:
            hit = np.nonzero(run.fid_steps == step)[0]
            row.append(cell(run, hit[-1]) if len(hit) else DASH)
        rows.append(row)
    if not rows:
        return "_No checkpoint was evaluated._"
    return md_table(["step", *(r.key for r in runs)], rows, "r" * (len(runs) + 1))


def _is_section(runs: list[LoadedRun]) -> list[str]:
    """The IS table and figure; the reason alone when no run has an IS."""
    reasons = [isc_unavailable(r) for r in runs]
    if runs and all(reasons):
        return [f"Inception Score {reasons[0]}.", ""]
    return [
        _metric_table(
            runs,
            lambda r, i: NA if isc_unavailable(r) else fmt_pm(r.isc_mean[i], r.isc_std[i], 2),
        ),
        "",
        f"![Inception Score vs training step]({FIGURES['is']})",
        "",
    ]


def _checkpoint_sections(runs: list[LoadedRun]) -> list[str]:
    return [
        "## FID at each checkpoint (lower is better)",
        "",
        _metric_table(runs, lambda r, i: fid_text(r, r.fid[i])),
        "",
        f"![FID vs training step]({FIGURES['fid']})",
        "",
        "## Inception Score at each checkpoint (higher is better; mean ± std over splits)",
        "",
        *_is_section(runs),
        "## KID at each checkpoint (lower is better; mean ± std over subsets)",
        "",
        _metric_table(runs, lambda r, i: fmt_pm(r.kid_mean[i], r.kid_std[i], 4)),
        "",
    ]


def _loss_and_samples_sections(runs: list[LoadedRun], smoothing: int) -> list[str]:
    rows = []
    for run in runs:
        s = run.loss_stats
        rows.append(
            [
                run.key,
                role(run.info.init),
                fmt_pm(s["d_loss_mean"], s["d_loss_std"], 4),
                fmt_pm(s["g_loss_mean"], s["g_loss_std"], 4),
            ]
        )
    return [
        "## Loss stability (paper Fig. 3: mean ± std of each loss over training)",
        "",
        md_table(["run", "init", "D loss", "G loss"], rows, "llrr"),
        "",
        f"![Discriminator and generator losses]({FIGURES['losses']})",
        "",
        (
            f"Faint lines: the loss at every step; solid: moving average over {smoothing} steps."
            if smoothing > 1
            else "Lines: the loss at every step (no smoothing)."
        ),
        "",
        "## Samples over training (fixed z)",
        "",
        f"![Sample grids over training]({FIGURES['samples']})",
        "",
    ]


def _verdict_sections(comparisons: list[dict[str, Any]], early_checkpoints: int) -> list[str]:
    out = [f"## Verdicts (first {early_checkpoints} common checkpoints)", ""]
    if comparisons:
        for cmp in comparisons:
            out += _pair_section(cmp)
    else:
        out += ["No (ordinary, unbalanced) pair among these runs: nothing to compare.", ""]
    return out


def _pair_section(cmp: dict[str, Any]) -> list[str]:
    o, u = cmp["ordinary"], cmp["unbalanced"]
    lines = [
        (
            f"### `{u}` (unbalanced) vs `{o}` (ordinary) — method {cmp['method']}, "
            f"loss {cmp['loss']}"
        ),
        "",
        f"**Verdict: {verdict_line(cmp)}**",
        "",
    ]
    if cmp["early_checkpoints"] and not cmp.get("fid_singular"):  # no FID table at N ≤ d
        rows = []
        for s, fo, fu in zip(
            cmp["early_steps"], cmp["early_fid_ordinary"], cmp["early_fid_unbalanced"], strict=True
        ):
            diff = fu - fo
            rows.append(
                [
                    fmt_step(s),
                    fmt(fo, 1),
                    fmt(fu, 1),
                    f"{diff:+.1f}" if finite(diff) else DASH,
                    "unbalanced" if fu < fo else "ordinary" if fo < fu else "tie",
                ]
            )
        lines += [
            (
                f"FID at the first {cmp['early_checkpoints']} common checkpoint(s) "
                "(Δ = unbalanced − ordinary; negative favours unbalanced):"
            ),
            "",
            md_table(["step", f"FID {o}", f"FID {u}", "Δ", "lower FID"], rows, "rrrrl"),
            "",
        ]
    lines += [
        "Loss stability (paper Fig. 3):",
        "",
        _std_line(cmp, "d_loss", "D"),
        _std_line(cmp, "g_loss", "G"),
        "",
        f"Convergence: {_convergence_text(cmp)}",
        "",
    ]
    return lines


def _std_line(cmp: dict[str, Any], which: str, label: str) -> str:
    std = cmp[f"{which}_std"]
    lower = cmp[f"{which}_std_lower"]
    ratio = (
        f", {std['unbalanced'] / std['ordinary']:.2f}× the ordinary std"
        if finite(std["unbalanced"]) and finite(std["ordinary"]) and std["ordinary"] > 0
        else ""
    )
    word = "lower" if lower else "not lower"
    return (
        f"- {label} loss std: {fmt(std['unbalanced'], 4)} (unbalanced) vs "
        f"{fmt(std['ordinary'], 4)} (ordinary) → **{word}**{ratio}."
    )


def _convergence_text(cmp: dict[str, Any]) -> str:
    if cmp.get("fid_singular"):
        return "not measured: FID is not reported at this N."
    target_step = cmp["match_target_step"]
    if target_step is None:
        return "the unbalanced run has no checkpoint with a FID, so convergence is not measured."
    head = (
        f"the unbalanced run has FID {fmt(cmp['match_target_fid'], 1)} at its first "
        f"checkpoint (step {fmt_step(target_step)}); "
    )
    if cmp["steps_to_match"] is None:
        last = cmp["ordinary_last_step"]
        within = f"within {fmt_step(last)} steps" if last is not None else "(no checkpoints)"
        return head + f"the ordinary run never reaches it {within}."
    conv = head + f"the ordinary run first reaches it at step {fmt_step(cmp['steps_to_match'])}"
    ratio = cmp["convergence_ratio"]
    if ratio is None:
        conv += " (ratio undefined: the unbalanced checkpoint is at step 0)."
    elif ratio > 1:
        conv += f" — **{ratio:.1f}×** as many steps."
    elif ratio == 1:
        conv += " — the same checkpoint (1.0×): no speed-up."
    else:
        conv += f" — {ratio:.2f}× the steps: the ordinary run is faster."
    return conv
