"""score.json, the DVC metrics of an evaluated run: numbers only, under the run's key."""

import math

from ugan.evaluation.evaluate import score


def test_the_score_is_the_final_and_best_fid():
    metrics = {"final": {"step": 300, "fid": 41.5, "isc_mean": 2.0}, "best_fid": 40.25}
    assert score(metrics) == {"fid": 41.5, "best_fid": 40.25}


def test_a_fid_that_could_not_be_computed_is_left_out():
    assert score({"final": {"step": 300}, "best_fid": 300.0}) == {"best_fid": 300.0}
    assert score({"final": {"fid": math.nan}, "best_fid": math.inf}) == {}
