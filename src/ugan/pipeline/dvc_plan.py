"""The pipeline as DVC plans it, read through DVC's own API (no Prefect, no MLflow imported):
every stage in the order `dvc repro` runs it, and its split into a grid's *cells* (one run's
`train_gan@<run>` and `evaluate@<run>`) and the *shared* stages every cell needs (prepared
data, classifier, VAE, DAE, initial weights). The Prefect flow, the work-pool cells and
`ugan run`'s side-by-side runs all split it this way."""

from __future__ import annotations

import os
from pathlib import Path

CELL_GROUPS = ("train_gan", "evaluate")  # a cell's own stages: these foreach groups, one key


def address(stage, root: str) -> str:
    """A stage's name as `dvc repro` takes it from the project root (`stage.addressing` is
    relative to the current directory)."""
    dvcfile = os.path.relpath(stage.path, root)
    name = getattr(stage, "name", None)
    if not name:  # a .dvc file
        return dvcfile
    return name if dvcfile == "dvc.yaml" else f"{dvcfile}:{name}"


def dvc_stages(project: str | Path) -> list[str]:
    """Every stage of the project's DVC pipeline, in the order `dvc repro` runs them."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import get_active_graph, plan_repro

    with Repo(str(project)) as repo:
        return [
            address(stage, repo.root_dir)
            for stage in plan_repro(get_active_graph(repo.index.graph))
        ]


def _in_a_cell(stage) -> bool:
    return getattr(stage, "name", "").split("@")[0] in CELL_GROUPS


def shared_stages(project: str | Path) -> list[str]:
    """Every stage upstream of a cell's stages, in the order `dvc repro` runs them."""
    import networkx as nx
    from dvc.repo import Repo
    from dvc.repo.reproduce import get_active_graph, plan_repro

    with Repo(str(project)) as repo:
        graph = get_active_graph(repo.index.graph)  # an edge goes from a stage to its deps
        cells = [s for s in graph if _in_a_cell(s)]
        upstream = set().union(*(nx.descendants(graph, s) for s in cells)) - set(cells)
        return [address(s, repo.root_dir) for s in plan_repro(graph) if s in upstream]


def needs_cells(project: str | Path, target: str) -> bool:
    """Whether `dvc repro <target>` runs the runs' cells (`evaluate`, `report`: yes; the 2-D
    benchmarks' `modes`: no)."""
    import networkx as nx
    from dvc.repo import Repo
    from dvc.repo.reproduce import get_active_graph

    with Repo(str(project)) as repo:
        graph = get_active_graph(repo.index.graph)
        wanted = repo.stage.collect(target)
        upstream = set(wanted).union(*(nx.descendants(graph, s) for s in wanted))
        return any(_in_a_cell(s) for s in upstream)


def cell_stages(run_key: str) -> list[str]:
    return [f"{group}@{run_key}" for group in CELL_GROUPS]
