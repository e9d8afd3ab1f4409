"""Which runs may be put side by side, and FID only where it is an honest number.

A FID, KID or PRDC number depends on the feature network and the sample counts as much as on
the generator: FID is biased upward at small N (and more so the larger the feature dimension d),
and two feature networks give numbers on different scales. evaluate therefore records, per run
(info.json's `scoring`, and in every fidelity.csv row), the SHA-256 of the feature network's
weights file, N (generated images per checkpoint), the number of held-out reference images, the
feature dimension d and k. `split_comparable` keeps the runs that agree on (digest, N, reference
N) and leaves the others out of every table, figure, pair and claim: the report then says which
runs were left out and why (`scoring_section`), and `build_report` warns. A run evaluated before
these were recorded has an unknown digest and N: it is comparable only with runs as unknown.

Which runs are kept: the largest group of runs that agree; on a tie, the group of the run that
comes first in the report order.

`fid_text` writes a FID cell: "n/a (N=200 ≤ d=2048)" where min(N, reference N) ≤ d (a singular
covariance, `ugan.evaluation.prdc.fid_singular`), else the number. Nothing is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass

from ugan.core.markdown import md_table
from ugan.reporting.formatting import DASH, NA, fmt
from ugan.reporting.inputs import LoadedRun


@dataclass(frozen=True)
class Scoring:
    """What a run's numbers were scored with (None: not recorded)."""

    feature_sha256: str | None
    num_samples: int | None
    num_reference: int | None
    feature_dim: int | None
    nearest_k: int | None
    feature_name: str | None
    fid_singular: str | None  # why FID is no honest number at these counts, or None

    @property
    def key(self) -> tuple:
        """What two runs must share to be compared."""
        return (self.feature_sha256, self.num_samples, self.num_reference)

    def short(self) -> str:
        return self.feature_sha256[:12] if self.feature_sha256 else "not recorded"


def _int(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def scoring_of(run: LoadedRun) -> Scoring:
    """The run's `Scoring`, from info.json (`scoring`; the older `num_samples` and
    `feature_network` fields where `scoring` is absent)."""
    recorded = run.about.get("scoring") or {}
    network = run.about.get("feature_network") or {}
    sha = recorded.get("feature_sha256") or network.get("sha256")
    return Scoring(
        feature_sha256=str(sha) if sha else None,
        num_samples=_int(recorded.get("num_samples", run.about.get("num_samples"))),
        num_reference=_int(recorded.get("num_reference")),
        feature_dim=_int(recorded.get("feature_dim")),
        nearest_k=_int(recorded.get("nearest_k")),
        feature_name=network.get("name") or run.about.get("feature_extractor"),
        fid_singular=recorded.get("fid_singular") or None,
    )


def split_comparable(runs: list[LoadedRun]) -> tuple[list[LoadedRun], list[LoadedRun]]:
    """(runs kept, runs left out), each in the order of `runs`: kept are the largest group that
    agrees on `Scoring.key` (ties: the group of the earliest run)."""
    groups: dict[tuple, list[LoadedRun]] = {}
    for run in runs:
        groups.setdefault(scoring_of(run).key, []).append(run)
    kept = max(groups.values(), key=len)  # max keeps the first of equal lengths
    kept_keys = {r.key for r in kept}
    return kept, [r for r in runs if r.key not in kept_keys]


def mismatch(kept: list[LoadedRun], left_out: list[LoadedRun]) -> str | None:
    """One sentence on the runs left out, or None when every run was kept."""
    if not left_out:
        return None
    reasons = "; ".join(f"`{r.key}` ({_differences(r, kept[0])})" for r in left_out)
    kept_names = ", ".join(f"`{r.key}`" for r in kept)
    return (
        f"Not compared: {reasons} {'was' if len(left_out) == 1 else 'were'} scored unlike "
        f"{kept_names}; numbers from different feature networks or sample counts are not "
        "comparable, so the report leaves "
        f"{'it' if len(left_out) == 1 else 'them'} out of every table, figure, pair and claim."
    )


def _differences(run: LoadedRun, reference: LoadedRun) -> str:
    """What differs between the scoring of `run` and of `reference`, e.g. "N 500 vs 1,000"."""
    mine, theirs = scoring_of(run), scoring_of(reference)
    return ", ".join(
        f"{name} {a} vs {b}"
        for name, a, b in (
            ("feature network", mine.short(), theirs.short()),
            ("N", _count(mine.num_samples), _count(theirs.num_samples)),
            ("reference N", _count(mine.num_reference), _count(theirs.num_reference)),
        )
        if a != b
    )


def scoring_note(kept: list[LoadedRun], left_out: list[LoadedRun]) -> str | None:
    """The report's first lines on runs left out, or None when every run was kept."""
    if not left_out:
        return None
    runs = ", ".join(f"`{r.key}`" for r in left_out)
    return (
        f"**Left out of every comparison: {runs}, scored with another feature network or "
        "sample count than the other runs (see “How the runs were scored”).**"
    )


def sample_count(run: LoadedRun) -> str:
    """N of the run's FID, for the column beside it."""
    return _count(scoring_of(run).num_samples)


def fid_text(run: LoadedRun, value, decimals: int = 1, at: int | None = None) -> str:
    """A FID cell (" @ step" `at` a step): the reason's short form where FID is singular at the
    run's counts."""
    s = scoring_of(run)
    if s.fid_singular and s.num_samples is not None and s.feature_dim is not None:
        n = min(s.num_samples, s.num_reference or s.num_samples)
        text = f"{NA} (N={n} ≤ d={s.feature_dim})"
    else:
        text = fmt(value, decimals)
    return text + (f" @ {at:,}" if at is not None else "")


def _count(value: int | None) -> str:
    return f"{value:,}" if value is not None else DASH


def scoring_section(kept: list[LoadedRun], left_out: list[LoadedRun]) -> list[str]:
    """ "How the runs were scored": the feature network, N, d and k the compared runs share, the
    small-sample caveat of FID, and the runs left out with what differs."""
    s = scoring_of(kept[0])
    name = s.feature_name or "feature network"
    lines = ["## How the runs were scored", ""]
    if s.feature_sha256 is None and s.num_samples is None:
        lines += [
            "The evaluation files do not record the feature network or the sample count (they "
            "predate these records): re-run the evaluate stages to check the runs are comparable.",
            "",
        ]
    else:
        lines += [
            f"Every compared run was scored with the {name} (weights sha256 `{s.short()}`, "
            f"d = {_count(s.feature_dim)} features) on N = {_count(s.num_samples)} generated "
            f"images per checkpoint against {_count(s.num_reference)} held-out images; "
            f"precision / recall / density / coverage with k = {_count(s.nearest_k)}. FID is "
            "biased upward at small N: compare FIDs only at the same N.",
            "",
        ]
    if s.fid_singular:
        lines += [f"**FID is not reported: {s.fid_singular}.** Raise eval.num_samples.", ""]
    if left_out:
        compared = {r.key for r in kept}
        rows = [
            [
                r.key,
                scoring_of(r).short(),
                _count(scoring_of(r).num_samples),
                _count(scoring_of(r).num_reference),
                "compared" if r.key in compared else "left out",
            ]
            for r in [*kept, *left_out]
        ]
        lines += [
            f"**{mismatch(kept, left_out)}**",
            "",
            md_table(["run", "feature network", "N", "reference N", ""], rows, "llrrl"),
            "",
        ]
    return lines
