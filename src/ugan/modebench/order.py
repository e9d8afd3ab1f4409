"""The order a benchmark's cells go to the worker processes: longest first.

The pool hands cells out in submission order, so with the long cells last (GAAN's after GAN's,
as the params list them) one worker ends alone on them while the other idles. Longest first
(LPT scheduling) keeps both busy to the end: on grid25's GAN + GAAN row, 5 GAN cells of ~220 s
and 5 GAAN cells of ~520 s on 2 workers end ~1,920 s in instead of ~2,000 s. Only the order
changes: every cell trains and is scored exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping

from ugan.config.schema import ResolvedRun

# One update's cost by method, relative to a plain GAN update, and of a penalised critic update
# (a double backward), from `benchmarks/mode_steps.py` (grid25, one thread, fused Adam,
# 2026-12-06): a GAN step (one D and one G update) 2.85 ms, GAAN's (autoencoder, D, G) 7.27 ms,
# WGAN-GP's (5 penalised critic updates and one G update) 15.16 ms.
UPDATE_COST = {"gan": 1.0, "rfgan": 1.0, "began": 1.0, "gaan": 2.5}
PENALTY_COST = {"wgan-gp": 2.0, "dragan": 2.0}


def cell_cost(run: ResolvedRun) -> float:
    """A cell's training cost in arbitrary units: only the order of cells reads it."""
    gan = run.gan
    g_updates = gan.rfgan.g_updates if gan.method == "rfgan" else 1
    updates = gan.n_critic * PENALTY_COST.get(gan.loss, 1.0) + g_updates
    return gan.steps * gan.batch_size * UPDATE_COST[gan.method] * updates


def longest_first(todo: Mapping, runs: Mapping[object, ResolvedRun]) -> dict:
    """`todo` reordered by each cell's cost, the longest first (ties keep their order)."""
    return dict(sorted(todo.items(), key=lambda item: -cell_cost(runs[item[0]])))
