import math

import pytest

from ugan.evaluation.intervals import mean_ci, verdict
from ugan.reporting.claims import claims_table


def test_mean_ci_by_hand():
    ci = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, df=2) · sd / √n
    assert (ci.mean, ci.n) == (2.0, 3)
    assert ci.low == pytest.approx(2.0 - half) and ci.high == pytest.approx(2.0 + half)


def _pair(seed_shift: float, better: bool, matched: int | None = 200) -> dict:
    good, bad = 20.0 + seed_shift, 80.0 + seed_shift
    return {
        "method": "gan",
        "loss": "ns",
        "d_loss_std": {"ordinary": 0.3 if better else 0.1, "unbalanced": 0.1 if better else 0.3},
        "g_loss_std": {"ordinary": 0.5 if better else 0.2, "unbalanced": 0.2 if better else 0.5},
        "d_loss_window_std": {
            "ordinary": 0.2 if better else 0.05,
            "unbalanced": 0.05 if better else 0.2,
        },
        "early_fid_ordinary": [bad, bad - 5] if better else [good, good - 5],
        "early_fid_unbalanced": [good, good - 5] if better else [bad, bad - 5],
        "early_is_ordinary": [1.5, 2.0] if better else [3.0, 3.2],
        "early_is_unbalanced": [3.0, 3.2 + seed_shift / 10] if better else [1.5, 2.0],
        "match_target_step": 100,
        "steps_to_match": matched,
        "ordinary_last_step": 600,
    }


def _verdicts(pairs):
    return {row["claim"]: row["verdict"] for row in claims_table(pairs)}


def test_every_claim_holds_when_unbalanced_wins_on_every_seed():
    verdicts = _verdicts([_pair(s, better=True, matched=300 + 100 * s) for s in range(3)])
    assert set(verdicts.values()) == {"holds"}


def test_claims_do_not_hold_when_ordinary_wins_on_every_seed():
    verdicts = _verdicts([_pair(s, better=False, matched=50 + s) for s in range(3)])
    assert set(verdicts.values()) == {"does not hold"}


def test_mixed_seeds_or_a_single_seed_are_inconclusive():
    mixed = _verdicts([_pair(0, True), _pair(1, False), _pair(2, True), _pair(3, False)])
    assert mixed["2. FID better early"] == "inconclusive"
    single = _verdicts([_pair(0, True)])
    assert set(single.values()) == {"inconclusive"}


def test_never_matched_counts_as_the_last_step():
    rows = claims_table([_pair(s, True, matched=None) for s in range(3)])
    convergence = next(r for r in rows if r["claim"] == "3. converges faster")
    assert convergence["values"] == [6.0, 6.0, 6.0]


def test_verdict_needs_the_whole_interval_on_one_side():
    assert verdict(mean_ci([0.9, 1.0, 1.1])) == "holds"
    assert verdict(mean_ci([-0.5, 1.0, 1.5])) == "inconclusive"
    assert verdict(mean_ci([1.5, 1.6, 1.7]), neutral=1.0) == "holds"
    assert verdict(mean_ci([1.1, 1.2, 1.3]), neutral=1.0) == "inconclusive"


def test_every_shipped_profile_expands_to_valid_params():
    from pathlib import Path

    import yaml

    from ugan.config.profiles import apply_profile, available, load_profile

    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "params.yaml").read_text())
    names = available(root / "profiles")
    assert {"paper-mnist", "methods"} <= set(names)
    for name in names:
        _, params = apply_profile(base, load_profile(name, root / "profiles"))
        assert params.runs
    _, paper = apply_profile(base, load_profile("paper-mnist", root / "profiles"))
    assert len(paper.runs) == 18 and paper.run("wgan-unbalanced-s2").gan.n_critic == 5
