"""The report's generator sections (ugan.reporting.generators): EMA beside G, interpolations."""

from __future__ import annotations

import json
import re

import numpy as np
from PIL import Image
from test_report import FID_ORDINARY, STEPS, write_run

from ugan.reporting.assemble import build_report


def _with_ema_and_grids(root, key: str, ema_fids: list[float]) -> None:
    eval_dir = root / "evaluation" / key
    rows = ["step,fid"] + [f"{s},{f}" for s, f in zip(STEPS, ema_fids, strict=True)]
    (eval_dir / "fidelity_ema.csv").write_text("\n".join(rows) + "\n")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    best = min(range(len(STEPS)), key=lambda i: ema_fids[i])
    metrics["ema"] = {
        "final": {"step": STEPS[-1], "fid": ema_fids[-1]},
        "best_fid": ema_fids[best],
        "best_fid_step": STEPS[best],
    }
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    (eval_dir / "interpolations").mkdir()
    for step in STEPS[-2:]:
        for mode in ("linear", "slerp"):
            image = np.zeros((8, 8, 3), dtype=np.uint8)
            Image.fromarray(image).save(eval_dir / "interpolations" / f"step_{step:06d}_{mode}.png")


def test_the_report_shows_ema_beside_g_and_links_the_final_interpolations(tmp_path):
    ordinary = write_run(tmp_path, "dcgan", init="random")
    unbalanced = write_run(tmp_path, "dcgan-unbalanced", init="vae", seed=1)
    ema_fids = [f - 5.0 for f in FID_ORDINARY]
    _with_ema_and_grids(tmp_path, "dcgan", ema_fids)
    summary = build_report([ordinary, unbalanced], tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Weight average (EMA) beside the raw generator" in text
    assert re.search(
        r"\| dcgan +\| +45\.00 \| +40\.00 \| +45\.00 \| +40\.00 \(step 1,600\) \|", text
    )
    assert re.search(r"\| dcgan +\| +200 \| +300\.00 \| +295\.00 \|", text)  # per checkpoint
    assert "dcgan-unbalanced |" not in text.split("## Weight average")[1].split("##")[0]
    for mode in ("linear", "slerp"):
        link = f"(../evaluation/dcgan/interpolations/step_001600_{mode}.png)"
        assert f"![dcgan {mode} interpolations, step 1600]{link}" in text
        assert (tmp_path / "report" / link[1:-1]).is_file()  # resolves from the report's folder
    assert "step_001400" not in text  # the final grids only
    assert summary["runs"]["dcgan"]["ema"]["best_fid"] == 40.0
    assert summary["runs"]["dcgan-unbalanced"]["ema"] is None


def test_without_ema_or_grids_the_sections_are_left_out(tmp_path):
    run = write_run(tmp_path, "dcgan", init="random")
    build_report([run], tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Weight average" not in text and "Latent interpolations" not in text
