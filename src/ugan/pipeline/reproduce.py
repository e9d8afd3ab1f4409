"""`ugan reproduce [ROW …]`: run the profile behind each row of the reproduction table as a DVC
experiment in this workspace, assess the row from what the experiment wrote, and keep the
table in `metrics/reproduction.json` and `reports/reproduction.md`.

A mode-coverage row trains only the variants it reads (GAAN's grid25 row: GAN and GAAN;
WGAN-GP's: GAN and WGAN-GP), so each row's experiment and wall time are its own; rows whose
params come out the same share one experiment, and a variant another row already trained with
the same settings is reused from the persisted `modes/` (by fingerprint). Every selected
profile is validated before anything runs. params.yaml gets its bytes back after each
experiment (the experiment itself keeps the profile's params: `dvc exp show`), so the
workspace's own pipeline is untouched. Rows not selected keep their last assessment, so
`ugan reproduce ROW` refreshes one row. A row run once per VAE seed keeps each seed's record
in `metrics/reproduction/<row>/` as the seed ends: a later call runs only the seeds missing
for the same params (hours on a CPU survive a stop), `--rerun` trains them again.
Every stage of an experiment is an MLflow run under the pipeline id `repro-<profile>-<time>`,
and the table goes to MLflow as a `reproduce` run. A profile's runs train side by side as in
`ugan run` (`--jobs`), before `dvc exp run` records the experiment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import yaml

from ugan.config.load import load_params, parse_params
from ugan.config.profiles import PROFILES_DIR, apply_profile, load_profile, render_params
from ugan.core.errors import ConfigError, UserError
from ugan.core.io import atomic_write_json, atomic_write_text
from ugan.core.paths import PREPARED
from ugan.pipeline import processes, side_by_side
from ugan.pipeline.dvc_plan import needs_cells
from ugan.reporting.began_row import PAPER_GAMMA, assess_began, class_evidence, load_evidence
from ugan.reporting.reproduction import Assessment, Row, assess, markdown, not_run
from ugan.reporting.reproduction_rows import BY_NAME, ROWS
from ugan.reporting.unbalanced_row import assess_unbalanced
from ugan.tracking.pipeline_run import PIPELINE_ENV
from ugan.tracking.stage_run import StageRun
from ugan.tracking.store import tracking_uri

TABLE = Path("metrics/reproduction.json")
SECTION = Path("reports/reproduction.md")
MODES = Path("metrics/modes.json")
CLASSIFIER_METRICS = Path("metrics/classifier.json")
GAAN_CLASSIFIER_ERROR = 0.004  # GAAN §4.2: "a pre-train classifier (0.4% in our case)"
REPORT = Path("reports/report.json")
RUNS, EVALUATION = Path("runs"), Path("evaluation")
SEEDS = Path("metrics/reproduction")  # <row>/vae-seed-<n>.json: one record per VAE seed
REPRODUCE_COMMANDS: dict[str, tuple] = {}  # cli.py adds these to its registry


def _arguments(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(row.name for row in ROWS)
    parser.add_argument("rows", nargs="*", help=f"rows to run (default: every row): {names}")
    parser.add_argument("--list", action="store_true", help="print the rows and what they run")
    parser.add_argument(
        "--vae-seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="rows run once per VAE seed (unbalanced-mnist): these seeds instead of the row's; "
        "fewer than the row's bar asks for are assessed 'not comparable'",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=side_by_side.jobs_count,
        help="a profile's runs trained at once, as `ugan run` trains them (default: one per run, "
        "at most one per core, on a CPU; 1 on a GPU)",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="train again the VAE seeds already recorded in metrics/reproduction/<row>/ for "
        "the same params (by default a recorded seed is kept and only the missing ones run)",
    )


def _selected(names: list[str]) -> list[Row]:
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ConfigError(f"unknown reproduction rows {unknown}; valid: {list(BY_NAME)}")
    return [BY_NAME[n] for n in names] if names else list(ROWS)


def row_params(row: Row, original: str, profiles: Path = PROFILES_DIR) -> str:
    """params.yaml text for the row's experiment: its profile (from `profiles`) applied, a
    mode-coverage row's benchmark cut to the variants the row reads and given the row's own
    `entry` settings, validated."""
    merged, _ = apply_profile(yaml.safe_load(original), load_profile(row.profile, profiles))
    if row.benchmark and row.benchmark in merged.get("modes", {}):
        entry = merged["modes"][row.benchmark]
        entry.update(dict(row.entry))
        wanted = row.variants()
        entry["variants"] = {k: v for k, v in entry["variants"].items() if k in wanted}
        parse_params(merged)
    return render_params(original, merged)


def _profiles(rows: list[Row], params_path: Path) -> dict[str, str]:
    """Each selected row's params, validated before any run: row name → the params text its
    experiment runs with."""
    original = params_path.read_text()
    return {row.name: row_params(row, original) for row in rows if row.profile}


def _head() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown (not a git repo)"


def _judge_modes(row: Row, text: str) -> Assessment:
    return assess(row, json.loads(MODES.read_text())["benchmarks"])


def _judge_stacked(row: Row, text: str) -> Assessment:
    """A Stacked MNIST row: its modes are read by our digit classifier, whose error GAAN's
    table does not share (its classifier: 0.4 %), so the verdict states ours."""
    found = _judge_modes(row, text)
    accuracy = json.loads(CLASSIFIER_METRICS.read_text())["heldout_accuracy"]
    found.reason += (
        f" — digits read by our classifier at {1 - accuracy:.1%} held-out error "
        f"(GAAN's: {GAAN_CLASSIFIER_ERROR:.1%})"
    )
    return found


def _judge_began(row: Row, text: str) -> Assessment:
    """The profile's BEGAN runs (key → γ), read from runs/ and evaluation/."""
    params = parse_params(yaml.safe_load(text))
    resolved = {key: params.run(key).gan for key in params.runs}
    gammas = {key: gan.began.gamma for key, gan in resolved.items() if gan.method == "began"}
    if not gammas:
        return assess_began(row, {})
    # the probe beside the bars uses the settings of the run nearest the paper's γ
    nearest = min(gammas, key=lambda key: abs(gammas[key] - PAPER_GAMMA))
    classes = class_evidence(resolved[nearest], params.model, PREPARED)
    return assess_began(row, load_evidence(gammas, RUNS, EVALUATION), classes)


# How a row's results are read once its experiment ran (Row.judge → reader and assessment).
JUDGES = {"modes": _judge_modes, "stacked": _judge_stacked, "began": _judge_began}


def run_profile(
    profile: str,
    text: str,
    params_path: Path,
    target: str,
    suffix: str = "",
    jobs: int | None = None,
) -> dict:
    """One `dvc exp run` of the profile's `target` stage in this workspace (every entry of a
    `foreach` stage), its runs trained side by side first; what ran, and how long. Raises if
    the experiment fails."""
    name = f"repro-{profile.removeprefix('repro-')}-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"
    env = dict(os.environ)
    env[PIPELINE_ENV] = name
    env.setdefault("MLFLOW_TRACKING_URI", tracking_uri())
    print(f"reproduce: profile {profile} → experiment {name}", flush=True)
    start = time.perf_counter()
    with processes.params_swapped(params_path, text):
        code = _cells_side_by_side(text, target, jobs, env)
        if code:
            raise UserError(f"profile {profile}: its runs failed (exit {code})")
        code = processes.call(["dvc", "exp", "run", "-n", name, target], env=env)
    if code:
        raise UserError(f"profile {profile}: `dvc exp run {target}` failed (exit {code})")
    return {
        "profile": profile,
        "experiment": name,
        "commit": _head(),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def _cells_side_by_side(text: str, target: str, jobs: int | None, env: dict[str, str]) -> int:
    """The profile's runs trained and evaluated `jobs` at once as `ugan run` does
    (`side_by_side.cells_first`), so that `dvc exp run` then finds them cached and records the
    experiment; nothing for a target that trains no run (`modes`)."""
    if not needs_cells(".", target):
        return 0
    params = parse_params(yaml.safe_load(text))
    runs = list(params.runs)
    jobs = jobs or side_by_side.default_jobs(params.device, len(runs))
    return side_by_side.cells_first(runs, jobs, env)


def _seeded(text: str, seed: int) -> str:
    """The profile's params with the VAE and the GAN runs drawn from `seed`."""
    merged = yaml.safe_load(text)
    for section in ("vae", "gan"):
        merged.setdefault(section, {})["seed"] = seed
    return render_params(text, merged)


def _params_digest(text: str) -> str:
    """What a seed's record is valid for: the profile's params as validated, without the
    values left at their defaults, so comments, key order, a default spelled out or a new
    key with a default keep the records (the commit of each is in its record)."""
    params = parse_params(yaml.safe_load(text)).model_dump(mode="json", exclude_defaults=True)
    canonical = json.dumps(params, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _seed_path(row: Row, seed: int) -> Path:
    return SEEDS / row.name / f"vae-seed-{seed}.json"


def recorded_seeds(row: Row, digest: str) -> dict[int, dict]:
    """The row's per-seed records made with these params (seed → record); a record made with
    other params is named and left out, never mixed in."""
    found = {}
    for path in sorted((SEEDS / row.name).glob("vae-seed-*.json")):
        record = json.loads(path.read_text())
        if record["params_sha256"] == digest:
            found[record["seed"]] = record
        else:
            print(f"reproduce: {path} was made with other params: left out", flush=True)
    return found


def record_seed(row: Row, seed: int, digest: str, run: dict, pairs: list[dict]) -> dict:
    """One VAE seed's experiment and its (ordinary, unbalanced) pairs, kept at once, so a
    crash or a stop at a later seed loses nothing and a later call adds the missing seeds."""
    record = {"seed": seed, "params_sha256": digest, **run, "pairs": pairs}
    atomic_write_json(_seed_path(row, seed), record)
    return record


def _over_vae_seeds(
    row: Row,
    text: str,
    params_path: Path,
    seeds: list[int] | None,
    rerun: bool,
    jobs: int | None = None,
) -> Assessment:
    """One experiment per VAE seed (`seeds`, default the row's), each through `row.target` with
    its own VAE, each recorded as it ends; seeds already recorded with the same params are kept
    unless `rerun`. The row is assessed from every recorded seed (reports/report.json pairs)."""
    digest = _params_digest(text)
    records = recorded_seeds(row, digest)
    for seed in seeds or row.vae_seeds:
        if seed in records and not rerun:
            kept = records[seed]["experiment"]
            print(f"reproduce: VAE seed {seed} kept from experiment {kept} (--rerun: train again)")
            continue
        seeded = _seeded(text, seed)
        run = run_profile(row.profile, seeded, params_path, row.target, f"-vae{seed}", jobs)
        pairs = json.loads(REPORT.read_text())["pairs"]
        records[seed] = record_seed(row, seed, digest, run, pairs)
    params = parse_params(yaml.safe_load(text))
    steps = max(params.run(key).gan.steps for key in params.runs)
    ordered = [records[seed] for seed in sorted(records)]
    found = assess_unbalanced(row, {r["seed"]: r["pairs"] for r in ordered}, steps)
    found.run = {
        "profile": row.profile,
        "experiment": ", ".join(r["experiment"] for r in ordered),
        "commit": ", ".join(dict.fromkeys(r["commit"] for r in ordered)),
        "wall_s": round(sum(r["wall_s"] for r in ordered), 1),
        "command": f"ugan reproduce {row.name}",
    }
    return found


def _read_table() -> dict[str, dict]:
    if not TABLE.is_file():
        return {}
    return {row["row"]: row for row in json.loads(TABLE.read_text())["rows"]}


def _write_table(rows: dict[str, dict]) -> str:
    ordered = [rows[row.name] for row in ROWS if row.name in rows]
    atomic_write_json(TABLE, {"rows": ordered})
    text = markdown(ordered)
    atomic_write_text(SECTION, "# Reproduction of the papers' central claims\n\n" + text)
    return text


def reproduce(args: argparse.Namespace) -> int:
    rows = _selected(args.rows)
    if args.list:
        width = max(len(row.name) for row in rows)
        for row in rows:
            what = f"profile {row.profile}" if row.profile else f"not CPU-sized: {row.needs}"
            if row.profile and not row.cpu_sized:
                what += f", run only when named (not CPU-sized: {row.needs})"
            print(f"{row.name:{width}s}  {row.where:26s} {what}")
        return 0
    seeds = args.vae_seeds or []
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--vae-seeds must be distinct, got {seeds}")
    params_path = Path(args.params)
    params = load_params(params_path)  # the workspace's own params are valid before any run
    texts = _profiles(rows, params_path)
    table = _read_table()
    for row in ROWS:  # every row has a line, e.g. one added since the table was last written
        table.setdefault(row.name, not_run(row).as_dict())
    runs: dict[str, dict] = {}
    for row in rows:
        if row.profile is None:
            table[row.name] = not_run(row).as_dict()
            continue
        if not row.cpu_sized and not args.rows:
            print(f"reproduce: {row.name} not run (not CPU-sized): `ugan reproduce {row.name}`")
            continue
        text = texts[row.name]
        if row.vae_seeds:
            found = _over_vae_seeds(row, text, params_path, args.vae_seeds, args.rerun, args.jobs)
            table[row.name] = found.as_dict()
            _write_table(table)
            continue
        if text not in runs:  # rows with the same params share one experiment
            shared = sum(other.profile == row.profile for other in ROWS) > 1
            suffix = f"-{row.name}" if shared else ""  # which row's experiment it is
            runs[text] = run_profile(
                row.profile, text, params_path, row.target, suffix, jobs=args.jobs
            )
        start = time.perf_counter()
        found = JUDGES[row.judge](row, text)
        found.run = {
            **runs[text],
            "command": f"ugan reproduce {row.name}",
            "assess_s": round(time.perf_counter() - start, 1),  # BEGAN's probe trains a D
        }
        table[row.name] = found.as_dict()
        _write_table(table)  # a later row's failure keeps this one
    text = _write_table(table)
    print(text)
    _track(table, params.tracking.experiment)
    return 0


def _track(table: dict[str, dict], experiment: str) -> None:
    """The table as one MLflow run: a metric per check (the mean over seeds), a tag per verdict,
    the markdown and json as artifacts."""
    with StageRun("reproduce", {"rows": sorted(table)}, experiment=experiment) as tracker:
        tracker.set_tags({f"ugan.verdict.{name}": row["verdict"] for name, row in table.items()})
        tracker.log_metrics(
            {
                f"{name}.{c['variant']}.{c['metric']}": c["mean"]
                for name, row in table.items()
                for c in row["checks"]
            }
        )
        tracker.log_artifact(TABLE, "reproduction")
        tracker.log_artifact(SECTION, "reproduction")


REPRODUCE_COMMANDS["reproduce"] = (
    "run the profiles behind the papers' claims and write the reproduction table",
    reproduce,
    _arguments,
)
