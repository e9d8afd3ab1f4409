"""The report puts side by side only runs scored alike (same feature network, same N), prints
precision / recall / density / coverage, and writes no FID where N ≤ d (ugan.reporting.scoring,
ugan.reporting.prdc)."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from test_report import FID_ORDINARY, FID_UNBALANCED, STEPS, write_run

from ugan.evaluation.prdc import PRDC_KEYS
from ugan.reporting.assemble import build_report
from ugan.reporting.inputs import PRDC_COLUMNS, RunInfo

SHA = "a" * 64
OTHER_SHA = "b" * 64


def scored(
    run: RunInfo,
    *,
    sha: str = SHA,
    n: int = 1000,
    reference: int = 1000,
    d: int = 128,
    recall: float = 0.6,
) -> RunInfo:
    """Add what evaluate records: PRDC columns and the scoring columns in fidelity.csv, final
    PRDC and N in metrics.json, the scoring record in info.json."""
    singular = None if min(n, reference) > d else f"N={min(n, reference)} ≤ d={d}: singular"
    lines = run.fidelity_csv.read_text().splitlines()
    lines[0] += (
        ",precision,recall,density,coverage,num_samples,num_reference,feature_dim,feature_sha256"
    )
    lines[1:] = [f"{row},0.9,{recall},1.05,0.7,{n},{reference},{d},{sha}" for row in lines[1:]]
    run.fidelity_csv.write_text("\n".join(lines) + "\n")
    metrics = json.loads(run.metrics_json.read_text())
    metrics["final"] |= {"precision": 0.9, "recall": recall, "density": 1.05, "coverage": 0.7}
    metrics["final"] |= {"num_samples": n, "num_reference": reference, "feature_dim": d}
    metrics["floor"] |= {"precision": 0.8, "recall": 0.81, "density": 0.99, "coverage": 0.95}
    run.metrics_json.write_text(json.dumps(metrics))
    info = json.loads(run.info_json.read_text())
    info["feature_network"] = {"name": "classifier", "sha256": sha}
    info["scoring"] = {
        "num_samples": n,
        "num_reference": reference,
        "feature_dim": d,
        "feature_sha256": sha,
        "nearest_k": 5,
        "fid_singular": singular,
    }
    run.info_json.write_text(json.dumps(info))
    return run


def pair(root, **unbalanced_scoring) -> list[RunInfo]:
    ordinary = scored(write_run(root, "dcgan", init="random", fids=FID_ORDINARY, loss_std=0.3))
    unbalanced = write_run(root, "dcgan-unbalanced", init="vae", fids=FID_UNBALANCED, seed=1)
    return [ordinary, scored(unbalanced, **unbalanced_scoring)]


def _section(text: str, heading: str) -> str:
    return text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def test_report_columns_match_the_evaluation_schema():
    assert PRDC_COLUMNS == PRDC_KEYS


def test_runs_scored_alike_are_compared_with_prdc_and_n(tmp_path):
    out = tmp_path / "report"
    summary = build_report(pair(tmp_path, recall=0.3), out)
    assert len(summary["pairs"]) == 1 and summary["left_out"] == {}
    text = (out / "report.md").read_text()
    assert "Not compared" not in text
    scoring = _section(text, "How the runs were scored")
    assert f"weights sha256 `{SHA[:12]}`" in scoring and "N = 1,000 generated" in scoring
    assert "d = 128" in scoring and "k = 5" in scoring
    final = _section(text, "Final numbers").splitlines()
    assert final[2].split("|")[-2].strip() == "N"
    assert (
        next(row for row in final if row.startswith("| dcgan ")).split("|")[-2].strip() == "1,000"
    )
    prdc = _section(text, "Precision, recall, density, coverage (final checkpoint)")
    rows = {row.split("|")[1].strip(): row for row in prdc.splitlines() if row.startswith("| ")}
    assert [c.strip() for c in rows["dcgan-unbalanced"].split("|")[2:-1]] == [
        "1,600", "1,000", "0.900", "0.300", "1.050", "0.700"
    ]  # fmt: skip
    assert "0.950" in rows["real (held-out vs train)"]
    assert "](prdc.png)" in prdc
    with Image.open(out / "prdc.png") as image:
        image.verify()
    assert summary["runs"]["dcgan"]["prdc"]["recall"] == 0.6
    assert summary["runs"]["dcgan"]["scoring"]["feature_sha256"] == SHA
    assert summary["files"]["prdc"] == "prdc.png"


@pytest.mark.parametrize(
    ("scoring", "differs"),
    [
        ({"sha": OTHER_SHA}, f"feature network {OTHER_SHA[:12]} vs {SHA[:12]}"),
        ({"n": 500}, "N 500 vs 1,000"),
    ],
)
def test_runs_scored_differently_are_listed_not_compared(tmp_path, scoring, differs):
    """A different feature network or N: no verdict, no mixed table, a warning and a section
    that names the run and what differs."""
    out = tmp_path / "report"
    with pytest.warns(UserWarning, match=r"Not compared: `dcgan-unbalanced` \(" + differs):
        summary = build_report(pair(tmp_path, **scoring), out)
    assert summary["pairs"] == [] and summary["claims"] == []
    assert list(summary["runs"]) == ["dcgan"] and list(summary["left_out"]) == ["dcgan-unbalanced"]
    text = (out / "report.md").read_text()
    head = text.split("## Verdicts at a glance")[0]
    assert "**Left out of every comparison: `dcgan-unbalanced`, scored with another" in head
    listed = _section(text, "How the runs were scored")
    assert f"**Not compared: `dcgan-unbalanced` ({differs}) was scored unlike `dcgan`" in listed
    assert "| dcgan-unbalanced |" in listed and "left out" in listed
    assert "| dcgan            |" in listed and "compared" in listed
    for heading in (
        "Runs",
        "Final numbers",
        "Precision, recall, density, coverage (final checkpoint)",
        "FID at each checkpoint (lower is better)",
    ):
        assert "dcgan-unbalanced" not in _section(text, heading), heading
    assert "### `dcgan-unbalanced` (unbalanced)" not in text


def test_the_largest_group_scored_alike_is_kept(tmp_path):
    runs = pair(tmp_path)
    runs.append(scored(write_run(tmp_path, "wgan", init="random", loss="wgan"), n=200))
    with pytest.warns(UserWarning, match="`wgan`"):
        summary = build_report(runs, tmp_path / "report")
    assert [(p["ordinary"], p["unbalanced"]) for p in summary["pairs"]] == [
        ("dcgan", "dcgan-unbalanced")
    ]
    assert list(summary["left_out"]) == ["wgan"] and summary["unpaired"] == []


def test_runs_without_records_are_not_mixed_with_recorded_ones(tmp_path):
    ordinary = scored(write_run(tmp_path, "dcgan", init="random"))
    unrecorded = write_run(tmp_path, "dcgan-unbalanced", init="vae", seed=1)  # older evaluation
    with pytest.warns(UserWarning, match="feature network not recorded vs"):
        summary = build_report([ordinary, unrecorded], tmp_path / "report")
    assert summary["pairs"] == []


def test_fid_at_n_not_above_d_is_not_printed(tmp_path):
    """N = 100 < d = 128: the covariances are singular; every FID cell says so, the verdict and
    the FID claims are not drawn from it; the files keep the number."""
    runs = [
        scored(write_run(tmp_path, "dcgan", init="random", fids=FID_ORDINARY), n=100),
        scored(
            write_run(tmp_path, "dcgan-unbalanced", init="vae", fids=FID_UNBALANCED, seed=1), n=100
        ),
    ]
    summary = build_report(runs, tmp_path / "report")
    text = (tmp_path / "report/report.md").read_text()
    cell = "n/a (N=100 ≤ d=128)"
    final = _section(text, "Final numbers")
    row = next(line for line in final.splitlines() if line.startswith("| dcgan "))
    assert [c.strip() for c in row.split("|")[3:5]] == [cell, f"{cell} @ 1,600"]
    assert f"| all runs | {cell} |" in _section(text, "Floor (held-out vs train)")
    per_step = _section(text, "FID at each checkpoint (lower is better)")
    assert per_step.count(cell) == 2 * len(STEPS) and "300.0" not in per_step
    assert "**FID is not reported: N=100 ≤ d=128: singular.**" in text
    (cmp,) = summary["pairs"]
    assert cmp["verdict"] == "FID is not compared: N=100 ≤ d=128: singular."
    pair_section = text.split("### `dcgan-unbalanced` (unbalanced) vs `dcgan`")[1]
    assert "FID dcgan" not in pair_section  # no table of FIDs
    assert "Convergence: not measured: FID is not reported at this N." in pair_section
    claims = {c["claim"]: c for c in summary["claims"]}
    assert claims["2. FID better early"]["verdict"] == "not measured"
    assert claims["3. converges faster"]["verdict"] == "not measured"
    assert claims["1. D loss std lower"]["verdict"] != "not measured"
    assert summary["runs"]["dcgan"]["fid"][0] == 300.0  # kept in the files, with its N
