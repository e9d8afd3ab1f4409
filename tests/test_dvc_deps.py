"""dvc.yaml's code deps are exact: every module a stage's script can execute (its import closure,
computed from the source) is covered by the stage's `deps:`, and nothing outside that closure is
listed, so a code edit reruns exactly the stages that run it. `python tests/importgraph.py
--write` rewrites the lists when a stage's imports change. The behaviour under real DVC is
tested in tests/test_pipeline.py::test_a_code_edit_changes_only_the_stages_that_run_it."""

from __future__ import annotations

import pytest
from importgraph import ROOT, closure_files, covered, stage_scripts

STAGES = stage_scripts()


def test_every_stage_with_a_script_is_checked():
    assert {"prepare", "train_gan", "evaluate", "report", "modes"} <= set(STAGES)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_deps_cover_the_stage_import_closure(stage):
    script, deps = STAGES[stage]
    assert covered(script, deps), f"{stage}: its script {script.name} is not in deps"
    missing = sorted(
        p.relative_to(ROOT).as_posix() for p in closure_files(script) if not covered(p, deps)
    )
    assert not missing, f"{stage} runs these modules but does not depend on them: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_deps_list_no_code_the_stage_does_not_run(stage):
    script, deps = STAGES[stage]
    closure = closure_files(script)
    extra = []
    for dep in deps:
        if not dep.startswith("src/"):
            continue
        path = ROOT / dep
        files = (
            {p for p in path.rglob("*.py") if p.name != "__init__.py"} if path.is_dir() else {path}
        )
        assert files, f"{stage}: dep {dep} does not exist"
        extra += sorted(p.relative_to(ROOT).as_posix() for p in files - closure)
    assert not extra, f"{stage} lists code it never imports (edits there rerun it): {extra}"
