"""One run of params.yaml's `runs:` end to end, as the DVC stage `train_gan@<run>` runs it
(stages/train_gan.py) and as every torchrun process runs it (`ugan.training.distributed`):
params → the prepared data, the generator init, the tracked params, tags and resume fingerprint →
`ugan.training.gan.train_gan` under an MLflow stage run. What differs for data-parallel
training (device, output and resume folders, the wrap hook, the tracker of each rank, extra
params / tags / fingerprint) comes in as arguments."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from ugan.config.schema import Params
from ugan.core.checkpoint_io import describe_mismatches, load_checkpoint, state_mismatches
from ugan.core.device import resolve_device
from ugan.core.errors import InputError
from ugan.core.io import ensure_writable, file_digest
from ugan.core.paths import PREPARED, RESUME_ROOT, RunLayout
from ugan.data.prepared import load_prepared
from ugan.nets.arch import ArchConfig
from ugan.nets.family import family_of
from ugan.tracking.stage_run import StageRun
from ugan.training.gan import train_gan

# The stage that writes each generator init file.
INIT_STAGES = {"random": "init_random", "vae": "transfer"}


def init_path(init: str) -> Path:
    """The generator init file a run starts from (`init_random`, `transfer` write them)."""
    return Path("models/init") / f"{init}.pt"


def check_init(path: Path, init: dict, arch: ArchConfig, name: str) -> None:
    """Refuse an init file that the run's generator cannot start from: no `arch`, another
    architecture than params' `model:`, or weights of other shapes (`InputError` naming the
    file, what differs and the stage to rerun); a later `size mismatch` would say neither."""
    stage = INIT_STAGES.get(name, "the stage that writes it")
    rerun = f"rerun `dvc repro {stage}` to rebuild it from the current params"
    saved = init.get("arch")
    if not isinstance(saved, dict):
        raise InputError(
            f"{path}: not a generator init: no `arch` in it (it holds {sorted(map(str, init))}); "
            f"{rerun}"
        )
    expected = arch.to_dict()
    differences = [
        f"{key}: file {saved.get(key)!r} vs params {expected.get(key)!r}"
        for key in sorted(set(saved) | set(expected))
        if saved.get(key) != expected.get(key)
    ]
    if differences:
        raise InputError(
            f"{path} was made for another architecture ({'; '.join(differences)}): {rerun}, "
            f"or restore the `model:` params it was made with"
        )
    if "state_dict" in init:
        with torch.device("meta"):  # shapes only: no memory, no draw from the random stream
            generator = family_of(arch).generator(arch)
        mismatches = state_mismatches(init["state_dict"], generator.state_dict())
        if mismatches:
            raise InputError(
                f"{path}: its weights do not fit the generator its `arch` describes "
                f"({describe_mismatches(mismatches)}): the file is corrupt or was assembled "
                f"from another architecture's weights; {rerun}"
            )


def stage_run(p: Params, run_key: str, tracked: dict) -> StageRun:
    """The MLflow stage run of `train_gan@<run_key>`."""
    return StageRun(
        "train_gan",
        tracked,
        run_key=run_key,
        experiment=p.tracking.experiment,
        log_models=p.tracking.log_models,
    )


def run_train_gan(
    p: Params,
    run_key: str,
    *,
    device: torch.device | None = None,
    out_dir: Path | None = None,
    resume_root: Path = RESUME_ROOT,
    wrap: Callable | None = None,
    tracked: dict | None = None,
    tags: dict | None = None,
    fingerprint: dict | None = None,
    open_tracker: Callable[[dict], AbstractContextManager] | None = None,
) -> dict:
    """Train run `run_key` of `p` into `out_dir` (default runs/<run_key>) on `device` (default:
    params' `device`), with params' speed policy (`perf`). `tracked`, `tags` and `fingerprint`
    add to the MLflow params, the run's tags and the resume fingerprint; `open_tracker(params)`
    replaces the stage run (another rank's tracker, say). Returns train_gan's summary."""
    run = p.run(run_key)
    device = device or resolve_device(p.device)
    init_file = init_path(run.init)
    init, data = load_checkpoint(init_file), load_prepared(PREPARED)
    arch = p.model.arch(p.data.image_size, data.shape[0], data.num_classes)
    check_init(init_file, init, arch, run.init)
    layout = RunLayout(out_dir or Path("runs") / run_key)
    for folder in (layout.root, layout.checkpoints, layout.samples):
        ensure_writable(folder)  # a read-only folder stops the run here, not at its first save
    params = {
        "run": p.runs[run_key].model_dump(exclude_none=True),
        "gan": run.gan.model_dump(),
        "model": p.model.model_dump(),
        "perf": p.perf.model_dump(),
        "device": str(device),
        **(tracked or {}),
    }
    opened = open_tracker(params) if open_tracker else stage_run(p, run_key, params)
    with opened as tracker:
        tracker.set_tags(
            {
                "ugan.init": run.init,
                "ugan.loss": run.gan.loss,
                "ugan.method": run.gan.method,
                **(tags or {}),
            }
        )
        return train_gan(
            run_key,
            run,
            arch,
            data,
            init,
            layout.root,
            tracker,
            init_std=p.model.init_std,
            device=device,
            fingerprint={
                "data": file_digest(PREPARED),
                "init_file": file_digest(init_file),
                **(fingerprint or {}),
            },
            resume_root=resume_root,
            perf=p.perf,
            wrap=wrap,
        )
