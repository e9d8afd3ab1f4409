"""Tests for ugan.reporting on small fake inputs whose answers are known."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ugan.reporting.assemble import build_report
from ugan.reporting.comparisons import pair_runs
from ugan.reporting.inputs import RunInfo, load_run

STEPS = [200, 400, 600, 800, 1000, 1200, 1400, 1600]
# Ordinary: slow start. Unbalanced: low FID from the first checkpoint.
FID_ORDINARY = [300.0, 200.0, 150.0, 100.0, 80.0, 60.0, 50.0, 45.0]
FID_UNBALANCED = [90.0, 70.0, 60.0, 55.0, 50.0, 46.0, 44.0, 42.0]


def write_run(
    root: Path,
    key: str,
    *,
    init: str,
    loss: str = "ns",
    method: str = "gan",
    fids: list[float] = FID_ORDINARY,
    steps: list[int] = STEPS,
    loss_std: float = 0.1,
    n_steps: int = 1600,
    seed: int = 0,
    record_losses: bool = True,
) -> RunInfo:
    """Write runs/KEY/{losses.csv,samples/} and evaluation/KEY/{fidelity.csv,metrics.json,
    info.json}, as train_gan and evaluate do."""
    rng = np.random.default_rng(seed)
    run_dir = root / "runs" / key
    eval_dir = root / "evaluation" / key
    (run_dir / "samples").mkdir(parents=True)
    eval_dir.mkdir(parents=True)

    d = 0.65 + loss_std * rng.standard_normal(n_steps)
    g = 0.85 + loss_std * rng.standard_normal(n_steps)
    lines = ["step,d_loss,g_loss,d_real,d_fake"]
    lines += [f"{s + 1},{d[s]:.6f},{g[s]:.6f},0.5,0.4" for s in range(n_steps)]
    (run_dir / "losses.csv").write_text("\n".join(lines) + "\n")

    for step in steps:
        grid = rng.integers(0, 256, size=(34, 34, 3), dtype=np.uint8)
        Image.fromarray(grid).save(run_dir / "samples" / f"step_{step:06d}.png")

    rows = ["step,fid,isc_mean,isc_std,kid_mean,kid_std"]
    for step, fid in zip(steps, fids, strict=True):
        rows.append(f"{step},{fid},{10 - fid / 50:.4f},0.1,{fid / 10000:.6f},0.0005")
    (eval_dir / "fidelity.csv").write_text("\n".join(rows) + "\n")

    info = {"run": key, "init": init, "loss": loss, "method": method}
    metrics = {
        "final": {
            "step": steps[-1],
            "fid": fids[-1],
            "isc_mean": 10 - fids[-1] / 50,
            "kid_mean": fids[-1] / 10000,
        },
        "best_fid": min(fids),
        "floor": {"fid": 3.2, "isc_mean": 9.87, "kid_mean": 0.0001},
    }
    if record_losses:
        metrics["losses"] = {
            "d_loss_mean": float(d.mean()),
            "d_loss_std": float(d.std()),
            "g_loss_mean": float(g.mean()),
            "g_loss_std": float(g.std()),
        }
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    (eval_dir / "info.json").write_text(json.dumps(info))
    return load_run(key, root / "runs", root / "evaluation")


@pytest.fixture(scope="module")
def winning(tmp_path_factory):
    """dcgan (ordinary, noisy losses) vs dcgan-unbalanced (lower FID early, quiet losses)."""
    root = tmp_path_factory.mktemp("winning")
    ordinary = write_run(root, "dcgan", init="random", fids=FID_ORDINARY, loss_std=0.3)
    unbalanced = write_run(
        root, "dcgan-unbalanced", init="vae", fids=FID_UNBALANCED, loss_std=0.1, seed=1
    )
    out = root / "report"
    summary = build_report([ordinary, unbalanced], out, early_checkpoints=3, smoothing=25)
    return out, summary


def test_summary_numbers_when_unbalanced_wins(winning):
    _, summary = winning
    assert len(summary["pairs"]) == 1
    pair = summary["pairs"][0]
    assert pair["ordinary"] == "dcgan"
    assert pair["unbalanced"] == "dcgan-unbalanced"
    assert pair["early_steps"] == [200, 400, 600]
    assert pair["early_fid_ordinary"] == [300.0, 200.0, 150.0]
    assert pair["early_fid_unbalanced"] == [90.0, 70.0, 60.0]
    assert pair["unbalanced_wins_early"] == 3
    assert pair["early_checkpoints"] == 3
    assert pair["unbalanced_beats_early"] is True
    assert pair["d_loss_std_lower"] is True
    assert pair["g_loss_std_lower"] is True
    # D's oscillation within the 200-step checkpoint intervals (white noise: its std)
    assert pair["loss_window"] == 200
    window = pair["d_loss_window_std"]
    assert window["ordinary"] == pytest.approx(0.3, rel=0.1)
    assert window["unbalanced"] == pytest.approx(0.1, rel=0.1)
    # Unbalanced FID at step 200 is 90; the ordinary run first gets <= 90 at step 1000 (80).
    assert pair["steps_to_match"] == 1000
    assert pair["convergence_ratio"] == pytest.approx(5.0)
    assert summary["unpaired"] == []
    run = summary["runs"]["dcgan-unbalanced"]
    assert run["init"] == "vae" and run["best_fid"] == 42.0 and run["best_fid_step"] == 1600
    assert run["losses"]["source"] == "metrics.json"
    assert run["steps"] == STEPS
    assert run["final"] == {"step": 1600, "fid": 42.0, "isc_mean": 9.16, "kid_mean": 0.0042}


def test_verdict_text_says_beats(winning):
    out, _ = winning
    text = (out / "report.md").read_text()
    assert "Unbalanced beats ordinary at 3 of 3 early checkpoints (mean FID 73.3 vs 216.7)" in text
    assert "does not beat" not in text
    assert "first reaches it at step 1,000" in text and "5.0×" in text
    # Formatting: FID with one decimal, IS with two, KID with four.
    assert "300.0" in text and "| 4.00 ± 0.10" in text and "0.0300 ± 0.0005" in text
    for image in ("fid.png", "is.png", "losses.png", "samples.png"):
        assert f"]({image})" in text


def test_markdown_tables_are_aligned(winning):
    out, _ = winning
    lines = (out / "report.md").read_text().splitlines()
    tables: list[list[str]] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) >= 6
    for table in tables:
        assert len({len(row) for row in table}) == 1, table
        assert len({row.count("|") for row in table}) == 1, table


def test_files_exist_and_pngs_are_valid(winning):
    out, summary = winning
    names = ("report.md", "report.json", "fid.png", "is.png", "losses.png")
    for name in (*names, "samples.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("fid.png", "is.png", "losses.png", "samples.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG"
            assert img.size[0] > 200 and img.size[1] > 100
            img.load()
    assert json.loads((out / "report.json").read_text()) == summary
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_not_beating_and_never_matching(tmp_path):
    # Unbalanced worse at 2 of the 3 early checkpoints and noisier; its first FID (100) is
    # never reached by the ordinary run.
    ordinary = write_run(
        tmp_path, "lsgan", init="random", loss="ls", fids=[150, 120, 110, 105], steps=STEPS[:4]
    )
    unbalanced = write_run(
        tmp_path,
        "lsgan-unbalanced",
        init="vae",
        loss="ls",
        fids=[100, 130, 125, 90],
        steps=STEPS[:4],
        loss_std=0.4,
        seed=3,
        record_losses=False,
    )
    out = tmp_path / "report"
    summary = build_report([unbalanced, ordinary], out, early_checkpoints=3)
    (pair,) = summary["pairs"]
    assert (pair["ordinary"], pair["unbalanced"]) == ("lsgan", "lsgan-unbalanced")
    assert pair["unbalanced_wins_early"] == 1
    assert pair["unbalanced_beats_early"] is False
    assert pair["d_loss_std_lower"] is False and pair["g_loss_std_lower"] is False
    assert pair["steps_to_match"] is None and pair["convergence_ratio"] is None
    assert summary["runs"]["lsgan-unbalanced"]["losses"]["source"] == "losses.csv"
    assert summary["runs"]["lsgan-unbalanced"]["losses"]["d_loss_std"] == pytest.approx(
        0.4, rel=0.15
    )
    text = (out / "report.md").read_text()
    assert "beats" not in text
    assert "does not beat ordinary at the early checkpoints: lower FID at only 1 of 3" in text
    assert "never reaches it within 800 steps" in text
    assert "**not lower**" in text


def test_fewer_checkpoints_than_requested(tmp_path):
    ordinary = write_run(tmp_path, "a", init="random", fids=[300, 200], steps=[200, 400])
    unbalanced = write_run(tmp_path, "a-unbalanced", init="vae", fids=[250, 100], steps=[200, 400])
    summary = build_report([ordinary, unbalanced], tmp_path / "r", early_checkpoints=5)
    (pair,) = summary["pairs"]
    assert pair["early_steps"] == [200, 400] and pair["early_checkpoints"] == 2
    assert pair["unbalanced_wins_early"] == 2
    # Ordinary reaches 250 at step 400: twice the steps.
    assert pair["steps_to_match"] == 400 and pair["convergence_ratio"] == pytest.approx(2.0)


def test_single_run_without_pair(tmp_path):
    run = write_run(tmp_path, "wgan", init="random", loss="wgan")
    # Sample grids are optional: without them samples.png says so instead of failing.
    for png in run.samples_dir.iterdir():
        png.unlink()
    run.samples_dir.rmdir()
    out = tmp_path / "report"
    summary = build_report([run], out)
    assert summary["runs"]["wgan"]["sample_steps"] == []
    assert summary["pairs"] == [] and summary["unpaired"] == ["wgan"]
    text = (out / "report.md").read_text()
    assert "No (ordinary, unbalanced) pair" in text
    assert "| wgan" in text and "300.0" in text
    for name in ("fid.png", "is.png", "losses.png", "samples.png"):
        with Image.open(out / name) as img:
            img.verify()


@pytest.mark.parametrize(
    "missing",
    [
        "runs/dcgan/losses.csv",
        "evaluation/dcgan/fidelity.csv",
        "evaluation/dcgan/metrics.json",
        "evaluation/dcgan/info.json",
    ],
)
def test_missing_input_names_the_file(tmp_path, missing):
    write_run(tmp_path, "dcgan", init="random")
    (tmp_path / missing).unlink()
    with pytest.raises(FileNotFoundError, match=Path(missing).name):
        load_run("dcgan", tmp_path / "runs", tmp_path / "evaluation")


def test_missing_file_after_load_is_reported(tmp_path):
    run = write_run(tmp_path, "dcgan", init="random")
    run.fidelity_csv.unlink()
    with pytest.raises(FileNotFoundError, match="fidelity.csv"):
        build_report([run], tmp_path / "report")


def _info(key: str, init: str, loss: str, method: str = "gan") -> RunInfo:
    p = Path("/nonexistent")
    return RunInfo(key, init, loss, method, p, p, p, p)


def test_pair_runs_pairs_by_loss_and_method():
    runs = [
        _info("dcgan", "random", "ns"),
        _info("lsgan-unbalanced", "vae", "ls"),
        _info("wgan", "random", "wgan"),
        _info("dcgan-unbalanced", "vae", "ns"),
        _info("lsgan", "random", "ls"),
        _info("aegan-ns", "vae", "ns", method="aegan"),
    ]
    pairs = [(o.key, u.key) for o, u in pair_runs(runs)]
    assert pairs == [("dcgan", "dcgan-unbalanced"), ("lsgan", "lsgan-unbalanced")]


def test_pair_runs_matches_seeds_by_name():
    runs = [
        _info("dcgan-s1", "random", "ns"),
        _info("dcgan-s0", "random", "ns"),
        _info("dcgan-unbalanced-s0", "vae", "ns"),
        _info("dcgan-unbalanced-s1", "vae", "ns"),
    ]
    pairs = [(o.key, u.key) for o, u in pair_runs(runs)]
    assert pairs == [("dcgan-s1", "dcgan-unbalanced-s1"), ("dcgan-s0", "dcgan-unbalanced-s0")]


def _without_is(run: RunInfo, reason: str) -> None:
    """Rewrite a run's evaluation as evaluate writes it for unlabelled data: NaN IS columns,
    no IS numbers in metrics.json, the reason in info.json."""
    rows = run.fidelity_csv.read_text().splitlines()
    cells = [row.split(",") for row in rows[1:]]
    rows[1:] = [",".join([c[0], c[1], "nan", "nan", *c[4:]]) for c in cells]
    run.fidelity_csv.write_text("\n".join(rows) + "\n")
    metrics = json.loads(run.metrics_json.read_text())
    del metrics["final"]["isc_mean"], metrics["floor"]["isc_mean"]
    run.metrics_json.write_text(json.dumps(metrics))
    info = json.loads(run.info_json.read_text())
    info["inception_score"] = {"available": False, "reason": reason}
    run.info_json.write_text(json.dumps(info))


def test_runs_without_an_inception_score_say_why_and_claim_nothing_from_it(tmp_path):
    reason = "not available for unlabelled data: rotation features"
    runs = [
        write_run(tmp_path, "dcgan", init="random", fids=FID_ORDINARY, loss_std=0.3),
        write_run(tmp_path, "dcgan-unbalanced", init="vae", fids=FID_UNBALANCED, seed=1),
    ]
    for run in runs:
        _without_is(run, reason)
    summary = build_report(runs, tmp_path / "report")
    text = (tmp_path / "report/report.md").read_text()
    assert f"**Inception Score (IS): {reason}.**" in text
    assert f"Inception Score {reason}." in text and "![Inception Score" not in text
    final = text.split("## Final numbers")[1].splitlines()
    final_row = next(line for line in final if line.startswith("| dcgan "))
    assert final_row.split("|")[5].strip() == "n/a"  # the IS column of the final numbers
    (is_claim,) = [c for c in summary["claims"] if c["claim"] == "2. IS better early"]
    assert is_claim["verdict"] == "not measured" and is_claim["reason"].endswith(reason)
    assert {c["verdict"] for c in summary["claims"] if c is not is_claim} != {"not measured"}
    assert summary["runs"]["dcgan"]["isc_unavailable"] == reason
    assert summary["pairs"][0]["isc_unavailable"] == reason
    with Image.open(tmp_path / "report/is.png") as img:
        img.verify()


def test_the_verdicts_at_a_glance_end_with_a_blank_line_before_the_next_heading(winning):
    text = (winning[0] / "report.md").read_text()
    glance = text.split("## Verdicts at a glance\n\n", 1)[1]
    items, rest = glance.split("\n\n", 1)
    assert all(line.startswith("- ") for line in items.splitlines()), items
    assert rest.startswith("## Claims of the paper, across seeds\n")
    for heading in re.finditer(r"^#+ .*$", text, re.M):  # every heading has a blank line before
        before = text[: heading.start()]
        assert heading.start() == 0 or before.endswith("\n\n"), heading.group()
