"""The rows of the reproduction table: each paper's central claim, the profile that runs it and
the bars its numbers must clear (`ugan.reporting.reproduction` assesses them; `ugan reproduce`
runs them).
"""

from __future__ import annotations

from dataclasses import replace

from ugan.reporting.reproduction import (
    Check,
    Row,
    above_versus,
    every_seed_at_least,
    mean_at_least,
    mean_within,
)

# GAAN §4.1: "500 epochs" of 50,000 points at batch 128 ≈ 195,000 generator steps.
GRID25_PAPER_STEPS = 195_000

# The Unbalanced GAN paper's row; its WGAN-only, longer variant below differs in its profile.
UNBALANCED = Row(
    "unbalanced-mnist",
    "Unbalanced GANs: better early, faster convergence, lower D-loss std",
    "Unbalanced GAN Fig. 3–5",
    "repro-unbalanced-mnist",
    target="report",
    judge="unbalanced",
    vae_seeds=(0, 1, 2, 3, 4),
    cpu_sized=False,
    needs=(
        "5 experiments (one per VAE seed) of 6 conditional GAN runs at 1,250 steps (20 "
        "epochs), through evaluate and report: 59–78 min per seed at one torch thread, "
        "~3.4 h for the five run two at a time on 2 CPU cores; a GPU runner: `ugan "
        "reproduce unbalanced-mnist`"
    ),
)


# GAAN Table 3's row, CPU-sized; its longer variant in ROWS runs the same profile at 5 seeds and
# 10× the steps, scored along the way so that the report shows whether the counts level off.
STACKED = Row(
    "gaan-stacked-mnist",
    "GAAN beats GAN and WGAN-GP on MNIST-1K with a K/4 critic",
    "GAAN Table 3",
    "repro-stacked-mnist",
    "stacked-k4",
    checks=(
        Check(
            "gaan",
            "modes_covered",
            "mean and seeds above WGAN-GP's and GAN's (Mann-Whitney p ≤ 0.05)",
            above_versus,
            versus=("wgan-gp", "gan"),
        ),
        Check(
            "wgan-gp",
            "modes_covered",
            "mean and seeds above GAN's (Mann-Whitney p ≤ 0.05)",
            above_versus,
            versus=("gan",),
        ),
    ),
    beside=(
        ("gan", "modes_covered"),
        ("gaan", "kl_uniform"),
        ("wgan-gp", "kl_uniform"),
        ("gan", "kl_uniform"),
        # how many of those images hold three digits the classifier is sure of (real: 0.88)
        ("gaan", "confident"),
        ("wgan-gp", "confident"),
    ),
    min_seeds=3,  # 3 × 2,000 steps each: 21.9 min on 2 cores, 38.7 on a CPU 2.4× slower
    judge="stacked",
)

ROWS: tuple[Row, ...] = (
    Row(
        "gaan-grid25",
        "GAAN₂ covers all 25 grid modes, registering more points than GAN",
        "GAAN Table 2",
        "repro-grid25",
        "grid25",
        checks=(
            Check("gaan", "modes_covered", "mean ≥ 24.5", mean_at_least(24.5)),
            Check("gaan", "registered_points", "mean ≥ 1,700", mean_at_least(1700)),
        ),
        beside=(("gan", "registered_points"),),
        paper_steps=GRID25_PAPER_STEPS,
    ),
    Row(
        "wgan-gp-grid25",
        "WGAN-GP covers ~24 grid modes; GAN drops modes",
        "GAAN Table 2",
        "repro-grid25",
        "grid25",
        checks=(
            Check("wgan-gp", "modes_covered", "mean ≥ 23", mean_at_least(23)),
            Check("gan", "modes_covered", "mean in 21.5 ± 2", mean_within(19.5, 23.5)),
        ),
        paper_steps=GRID25_PAPER_STEPS,
    ),
    Row(
        "rfgan-ring8",
        "RFGAN learns every ring mode where GAN collapses",
        "RFGAN Fig. 3",
        "repro-ring8",
        "ring8",
        checks=(Check("rfgan", "modes_covered", "8 / 8 in every seed", every_seed_at_least(8)),),
        beside=(("gan", "modes_covered"),),
    ),
    Row(
        "began-mnist",
        "BEGAN: γ trades diversity for quality; M_global tracks convergence",
        "BEGAN §3.4, Fig. 3–4",
        "repro-began-mnist",
        min_seeds=1,
        target="evaluate",
        judge="began",
    ),
    STACKED,
    replace(
        STACKED,
        name="gaan-stacked-mnist-long",
        claim="GAAN beats GAN and WGAN-GP on MNIST-1K with a K/4 critic, trained 10× longer",
        entry=(("seeds", [0, 1, 2, 3, 4]), ("steps", 20_000), ("checkpoint_every", 2_500)),
        min_seeds=5,
        cpu_sized=False,
        needs=(
            "gaan-stacked-mnist's profile at 5 seeds × 20,000 steps, scored every 2,500 (at "
            "the CPU row's 2,000 GAAN and WGAN-GP were still climbing; a 4,000-step probe of 3 "
            "seeds on the CPU: WGAN-GP 808 modes, levelling off, GAAN 294, flat since step "
            "2,000): ~4.5 h on 2 CPU cores (`benchmarks/mode_steps.py --row "
            "gaan-stacked-mnist-long`: 8.4 h of steps on one core, 2 cells at once, plus "
            "scoring); not yet timed on a GPU, where its 15 cells (300,000 generator steps) "
            "train one at a time unless the entry's `workers` is raised (`make gpu-check` "
            "projects it); a GPU runner: `ugan reproduce gaan-stacked-mnist-long`"
        ),
    ),
    UNBALANCED,
    replace(
        UNBALANCED,
        name="unbalanced-mnist-wgan",
        claim="Unbalanced WGAN converges faster, measured: the WGAN pair run until ordinary "
        "catches up",
        profile="repro-unbalanced-mnist-wgan",
        needs=(
            "5 experiments (one per VAE seed) of the conditional WGAN pair at 2,500 steps "
            "(unbalanced-mnist's 1,250 left WGAN's ratio a bound), through evaluate and report: "
            "~50 min per seed at 2 torch threads (estimated), ~4 h for the five; a GPU runner: "
            "`ugan reproduce unbalanced-mnist-wgan`"
        ),
    ),
)

BY_NAME = {row.name: row for row in ROWS}
