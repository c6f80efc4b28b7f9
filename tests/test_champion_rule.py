"""The champion/challenger rule (the job lock has its own module, test_lock.py)."""

from __future__ import annotations

import pytest

from mnist_softmax.config import RetrainConfig
from mnist_softmax.retraining.champion_rule import decide

RULE = RetrainConfig(
    higher_is_better=["test/acc"],
    lower_is_better=["test/nll_calibrated", "test/ece_calibrated"],
    margins={"test/nll_calibrated": -1e-4, "test/ece_calibrated": 0.002},
)
CHAMPION = {"test/acc": 0.925, "test/nll_calibrated": 0.270, "test/ece_calibrated": 0.005}


def test_first_model_is_promoted():
    assert decide(CHAMPION, None, RULE).promote


def test_better_challenger_is_promoted():
    better = {"test/acc": 0.926, "test/nll_calibrated": 0.265, "test/ece_calibrated": 0.006}
    decision = decide(better, CHAMPION, RULE)
    assert decision.promote and decision.label == "promoted"
    assert len(decision.reasons) == 3


def test_identical_model_is_kept_because_nll_must_improve():
    decision = decide(dict(CHAMPION), CHAMPION, RULE)
    assert not decision.promote
    assert decision.reasons == [
        "test/nll_calibrated: challenger 0.27000 vs champion 0.27000 (margin -0.0001) worse"
    ]


@pytest.mark.parametrize(
    ("metric", "value"),
    [("test/acc", 0.924), ("test/nll_calibrated", 0.2700), ("test/ece_calibrated", 0.0071)],
)
def test_worse_on_any_metric_is_kept(metric, value):
    challenger = {"test/acc": 0.93, "test/nll_calibrated": 0.2, "test/ece_calibrated": 0.005}
    challenger[metric] = value
    decision = decide(challenger, CHAMPION, RULE)
    assert not decision.promote
    assert decision.reasons[0].startswith(metric)


def test_ece_within_margin_passes():
    challenger = {"test/acc": 0.925, "test/nll_calibrated": 0.26, "test/ece_calibrated": 0.0069}
    assert decide(challenger, CHAMPION, RULE).promote


def test_missing_metric_is_not_a_win():
    decision = decide({"test/acc": 0.99}, CHAMPION, RULE)
    assert not decision.promote
    assert "missing" in decision.reasons[0]


def test_nan_challenger_is_never_promoted_even_without_a_champion():
    broken = {"test/acc": 0.93, "test/nll_calibrated": float("nan"), "test/ece_calibrated": 0.01}
    for champion in (None, CHAMPION):
        decision = decide(broken, champion, RULE)
        assert not decision.promote
        assert decision.reasons == ["test/nll_calibrated: challenger's value nan: cannot compare"]
