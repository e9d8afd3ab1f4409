"""benchmarks/gpu_matrix.py (step 4 of `make gpu-check`, with its gpu_runs.py and gpu_audits.py)
run tiny on the CPU: every method × every `perf:` preset trains with finite losses and loadable
checkpoints and no host read of a loss outside the log / checkpoint steps; the cross-device and
FID checks run their plumbing (on CUDA they compare the CPU with the GPU: the resume refusal and
the FID agreement need one). The audit is shown to catch what it looks for, and gpu_check to
fail on a failed row; its Stacked MNIST step (5) runs tiny on the CPU as well."""

from __future__ import annotations

import importlib
import itertools
import json
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(monkeypatch, name: str):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # they import their siblings
    return importlib.import_module(name)


@pytest.fixture
def gpu_matrix(monkeypatch):
    return _benchmark(monkeypatch, "gpu_matrix")


@pytest.fixture
def gpu_runs(monkeypatch):
    return _benchmark(monkeypatch, "gpu_runs")


@pytest.fixture
def gpu_audits(monkeypatch):
    return _benchmark(monkeypatch, "gpu_audits")


@pytest.fixture
def gpu_check(monkeypatch):
    return _benchmark(monkeypatch, "gpu_check")


@pytest.mark.filterwarnings("ignore:perf.compile. discriminator left uncompiled")
def test_every_method_and_preset_trains_and_checks_out_on_the_cpu(
    gpu_matrix, gpu_runs, gpu_check, tiny_arch, tiny_data
):
    rows = gpu_matrix.run_matrix(
        "cpu", 8, data=tiny_data, arch=tiny_arch, batch_size=16, fid_samples=32,
        compile_backend="aot_eager",  # inductor would compile C++ for minutes
    )  # fmt: skip
    failed = [
        f"{r['method']}/{r['loss']}/{r['preset']} {r['check']}: {r['error']}"
        for r in rows
        if not r["ok"]
    ]
    assert not failed, "\n".join(failed)

    cells = {(r["method"], r["loss"], r["preset"]) for r in rows if r["check"] == "train"}
    methods = {(m, loss or "own") for m, loss, _ in gpu_matrix.CELLS}
    assert cells == {(*m, p) for m, p in itertools.product(methods, gpu_runs.PRESETS)}
    assert {m for m, _ in methods} == {"gan", "began", "rfgan", "gaan"}
    assert {loss for m, loss in methods if m == "gan"} >= {"ns", "wgan-gp"}
    for row in rows:
        if row["check"] == "train":
            # steps 3, 5 and 7 of 8 (log every 2, checkpoints at 4 and 8); with 64 images in
            # batches of 16, a new epoch's shuffle starts in step 5 (gan/ns)
            assert row["audited_steps"] == 3 and row["syncs"] == 0, row
            assert row["checkpoints"] == [4, 8], row
    (cross,) = [r for r in rows if r["check"] == "cross-device"]
    assert cross["max_sample_difference"] == 0.0 and "refused" not in cross  # one device here
    (fid,) = [r for r in rows if r["check"].startswith("fid")]
    assert fid["fid_relative_same_images"] == 0.0 and fid["fid"]["cpu"] > 0
    table = gpu_check.matrix_table(rows)
    assert table.count("| ok |") == len(rows) and "FAILED" not in table


def test_the_audit_reports_a_loss_read_back_at_every_step(
    gpu_matrix, gpu_runs, tiny_arch, tiny_data, tmp_path
):
    """`loss_sync: step` reads each step's losses back at once: the audit names each step
    that is no log / checkpoint step, and the line that read."""
    presets = {**gpu_runs.PRESETS, "synced": {"loss_sync": "step"}}
    dae = {"dae_path": gpu_runs.make_dae(tiny_arch, tmp_path / "dae.pt")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gpu_runs, "PRESETS", presets)  # where perf_of looks presets up
        row = gpu_matrix.train_cell(
            "gan", "ns", "synced", device=torch.device("cpu"), data=tiny_data, arch=tiny_arch,
            workdir=tmp_path, steps=8, batch_size=16, resources=dae,
        )  # fmt: skip
    # log every 2, checkpoints at 4 and 8: steps 3, 5 and 7 are audited
    assert not row["ok"] and row["syncs"] == 3 and row["audited_steps"] == 3
    assert "3 host syncs in steps that are no log / checkpoint step" in row["error"]
    assert "step 3 (step): ugan/training/accel.py" in row["error"] and "(tolist)" in row["error"]


def test_the_cuda_audit_counts_sync_warnings_per_step_and_passes_others_on(gpu_audits, monkeypatch):
    """The CUDA side without a GPU: torch's sync-debug switch is faked, its warnings are not."""
    modes = []
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    audit = gpu_audits.SyncAudit("cuda")
    with pytest.warns(UserWarning, match="not a sync"), audit.watching():
        audit.at(3, "batch")
        warnings.warn("called a synchronizing CUDA operation", stacklevel=1)
        audit.at(3, "step")
        warnings.warn("not a sync", stacklevel=1)
        audit.at(4, "step")
        warnings.warn("called a synchronizing CUDA operation", stacklevel=1)
    assert modes == ["warn", 0]
    assert [(step, phase) for step, phase, _ in audit.events] == [(3, "batch"), (4, "step")]
    assert audit.events[0][2].startswith("test_gpu_matrix.py:")
    assert audit.outside({4}) == audit.events[:1]


def test_the_cadence_leaves_ordinary_steps_to_audit(gpu_runs):
    assert gpu_runs.cadence(24) == (6, 12)
    assert gpu_runs.cadence_steps(24) == {6, 12, 18, 24}
    with pytest.raises(ValueError, match="at least 4 steps"):
        gpu_runs.cadence(3)


def test_gpu_check_without_cuda_says_so_and_passes(gpu_check, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main() == 0
    assert "no CUDA GPU is visible here" in capsys.readouterr().out


def test_gpu_check_fails_on_a_failed_matrix_row_and_keeps_the_rows(
    gpu_check, monkeypatch, tmp_path
):
    rows = [
        {"check": "train", "method": "gan", "loss": "ns", "preset": "default", "ok": True,
         "seconds": 1.0, "error": "", "syncs": 0, "audited_steps": 16, "checkpoints": [12, 24]},
        {"check": "fid cpu vs cuda", "method": "gan", "loss": "ns", "preset": "default",
         "ok": False, "seconds": 2.0, "error": "FID on cuda 10.5 vs cpu 10.0: 5.00% apart"},
    ]  # fmt: skip
    calls = []

    def fake_run(cmd, cwd=None, env=None, timeout=None):
        calls.append((cmd, env))
        out = Path(cmd[cmd.index("--json") + 1])
        out.write_text(json.dumps({"rows": rows}))
        return 1, "1 / 2 ok", 3.0

    monkeypatch.setattr(gpu_check, "RESULTS", tmp_path)
    monkeypatch.setattr(gpu_check, "_run", fake_run)
    outcome = gpu_check.method_matrix()
    assert not outcome["ok"] and outcome["rows"] == rows
    (cmd, env), = calls  # fmt: skip
    assert cmd[1:4] == ["benchmarks/gpu_matrix.py", "--device", "cuda"]
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # set before the subprocess starts CUDA
    table = gpu_check.matrix_table(outcome["rows"])
    assert "| FAILED |" in table and "5.00% apart" in table and "16 steps audited" in table


def test_gpu_checks_stacked_mnist_step_projects_the_long_rows_hours(
    gpu_check, monkeypatch, tmp_path, tiny_data
):
    """Step 5 of `make gpu-check`, on the CPU here: mode_steps.py times each variant of
    `gaan-stacked-mnist-long` (its nets and settings) for real and projects the row's training
    hours from the fused steps: 5 seeds × 20,000 steps per variant."""
    from ugan.data.prepared import save_prepared

    monkeypatch.setattr(gpu_check, "RESULTS", tmp_path)
    prepared = tmp_path / "dataset.npz"
    save_prepared(prepared, tiny_data)
    outcome = gpu_check.stacked_steps(steps=2, device="cpu", prepared=prepared, warmup=1)
    assert outcome["ok"], outcome["tail"]
    stacked = outcome["stacked"]
    assert stacked["row"] == "gaan-stacked-mnist-long" and stacked["device"] == "cpu"
    assert set(stacked) >= {"gan", "wgan-gp", "gaan"}
    per_step = {v: stacked[v]["fused_ms"] for v in ("gan", "wgan-gp", "gaan")}
    assert all(ms > 0 for ms in per_step.values())
    expected = 5 * 20_000 * sum(per_step.values()) / 1e3 / 3600
    assert stacked["projected_hours"] == pytest.approx(expected)
