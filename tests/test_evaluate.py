"""Calibration metrics against hand-computed cases, naive loops and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from shipped import evaluation_args
from sklearn.metrics import classification_report, log_loss

from mnist_softmax.errors import DataError
from mnist_softmax.evaluation.evaluate import MODELS, evaluate
from mnist_softmax.evaluation.reliability import (
    assign_bins,
    bin_edges,
    check_logits,
    ece_bootstrap_ci,
    reliability_bins,
)
from mnist_softmax.model.numerics import nll, softmax

NAMES = [str(k) for k in range(10)]


def _two_class(confidences: list[float], predicted: list[int]) -> np.ndarray:
    p = np.asarray(confidences)
    proba = np.column_stack([p, 1 - p])
    return np.where(np.asarray(predicted)[:, None] == 0, proba, proba[:, ::-1])


def _logits(n: int = 2000, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 2.5  # informative: accuracy around 0.7
    return z, y


def test_ece_and_mce_on_a_hand_computed_case() -> None:
    # Bin (0.9, 1.0]: three predictions at 0.95, two right: |2/3 - 0.95| = 0.28333.
    # Bin (0.6, 0.7]: one prediction at 0.65, right: |1 - 0.65| = 0.35.
    # ECE = 3/4 * 0.28333 + 1/4 * 0.35 = 0.3; MCE = 0.35.
    proba = _two_class([0.95, 0.95, 0.95, 0.65], predicted=[0, 0, 1, 1])
    y = np.array([0, 0, 0, 1])
    bins = reliability_bins(proba, y, n_bins=10)
    assert bins.ece == pytest.approx(0.3)
    assert bins.mce == pytest.approx(0.35)
    assert bins.count.tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0, 3]
    assert bins.accuracy[9] == pytest.approx(2 / 3) and bins.confidence[6] == pytest.approx(0.65)


def test_bins_are_right_closed() -> None:
    edges = bin_edges(np.empty(0), n_bins=4, binning="uniform")
    assert assign_bins(np.array([0.0, 0.25, 0.2500001, 1.0]), edges).tolist() == [0, 0, 1, 3]


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_ece_matches_a_naive_loop(binning: str) -> None:
    z, y = _logits(seed=1)
    proba = softmax(z)
    bins = reliability_bins(proba, y, n_bins=15, binning=binning)
    conf, correct = proba.max(axis=1), proba.argmax(axis=1) == y
    edges, ece, mce = bins.edges, 0.0, 0.0
    for b in range(len(edges) - 1):
        lo = -np.inf if b == 0 else edges[b]
        hi = np.inf if b == len(edges) - 2 else edges[b + 1]
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            gap = abs(correct[inside].mean() - conf[inside].mean())
            ece += inside.mean() * gap
            mce = max(mce, gap)
    assert bins.ece == pytest.approx(ece) and bins.mce == pytest.approx(mce)


def test_quantile_bins_hold_equal_mass() -> None:
    z, y = _logits(n=3000, seed=2)
    bins = reliability_bins(softmax(z), y, n_bins=15, binning="quantile")
    assert len(bins.count) == 15 and bins.count.sum() == 3000
    assert bins.count.min() >= 199 and bins.count.max() <= 201


def test_nll_agrees_with_sklearn_and_survives_saturation() -> None:
    z, y = _logits(seed=3)
    assert nll(z, y) == pytest.approx(log_loss(y, softmax(z), labels=range(10)))
    huge = np.array([[0.0, 1000.0]])  # log_loss would clip this at ~36 nats
    assert nll(huge, np.array([0])) == pytest.approx(1000.0)


def test_bootstrap_interval_brackets_ece_and_is_reproducible() -> None:
    z, y = _logits(seed=4)
    proba = softmax(z, 0.5)  # over-confident: ECE well above its noise
    bins = reliability_bins(proba, y)
    low, high = ece_bootstrap_ci(proba, y, bins.edges, 500, 0.95, np.random.default_rng(0))
    assert low < bins.ece < high and high - low < 0.05
    again = ece_bootstrap_ci(proba, y, bins.edges, 500, 0.95, np.random.default_rng(0))
    assert again == (low, high)
    assert ece_bootstrap_ci(proba, y, bins.edges, 0, 0.95, np.random.default_rng(0)) is None


def test_check_logits_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="labels outside"):
        check_logits(np.zeros((2, 3)), np.array([0, 3]))


def test_evaluate_layout_and_sklearn_agreement() -> None:
    z, y = _logits(seed=5)
    result = evaluate(
        3.0 * z, y, 3.0, NAMES, np.random.default_rng(0), **evaluation_args(bootstrap_samples=200)
    )
    test = result.metrics["test"]
    sparsity = {"sparsemax_loss", "true_zero", "support", "single"}
    assert set(test) == {
        "acc", "nll", "brier", "ece", "mce", "ece_ci_low", "ece_ci_high", "nll_calibrated",
        "brier_calibrated", "ece_calibrated", "mce_calibrated", "ece_calibrated_ci_low",
        "ece_calibrated_ci_high", *sparsity, *(f"{k}_calibrated" for k in sparsity),
    }  # fmt: skip
    assert test["support"] == 10 and test["true_zero"] == test["single"] == 0  # softmax: dense
    assert result.metrics["temperature"] == 3.0
    assert test["acc"] == np.mean(z.argmax(axis=1) == y)
    assert test["nll_calibrated"] == pytest.approx(nll(z, y))
    assert test["nll"] == pytest.approx(nll(3.0 * z, y))
    assert test["ece_calibrated"] == pytest.approx(reliability_bins(softmax(z), y).ece)
    # Multiclass Brier: mean over samples of sum over classes of (p - onehot)^2.
    onehot = np.eye(10)[y]
    assert test["brier_calibrated"] == pytest.approx(((softmax(z) - onehot) ** 2).sum(1).mean())
    report = classification_report(y, z.argmax(axis=1), output_dict=True)
    for name in NAMES:
        assert result.metrics["per_class"][name]["recall"] == pytest.approx(report[name]["recall"])
        assert result.metrics["per_class"][name]["support"] == report[name]["support"]
    assert (
        result.confusion.sum() == len(y)
        and np.trace(result.confusion) == (z.argmax(axis=1) == y).sum()
    )


def test_evaluate_tables() -> None:
    z, y = _logits(n=500, seed=6)
    result = evaluate(
        z, y, 1.0, NAMES, np.random.default_rng(0), **evaluation_args(bootstrap_samples=0)
    )
    assert "ece_ci_low" not in result.metrics["test"]
    table = result.reliability_table()
    assert list(table.columns) == ["model", "bin", "confidence", "accuracy", "count"]
    assert table.groupby("model")["count"].sum().to_dict() == dict.fromkeys(MODELS, 500)
    confusion = result.confusion_table()
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == 500
    assert (confusion["actual"] == confusion["predicted"]).mean() == result.metrics["test"]["acc"]


def test_evaluate_refuses_an_empty_test_split() -> None:
    with pytest.raises(DataError, match="empty"):
        empty = np.zeros((0, 10))
        evaluate(empty, np.zeros(0, int), 1.0, NAMES, np.random.default_rng(0), **evaluation_args())


@pytest.mark.parametrize("seed", [0, 1])
def test_brier_confusion_and_per_class_equal_sklearn_bit_for_bit(seed) -> None:
    """The numpy forms the stages use (no scikit-learn import) give sklearn's exact numbers."""
    from sklearn.metrics import (
        brier_score_loss,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    from mnist_softmax.evaluation.evaluate import confusion_counts, per_class_scores
    from mnist_softmax.evaluation.reliability import brier_score

    z, y = _logits(n=700, seed=seed)
    z[:, 9] -= 50  # class 9 is never predicted: the zero-division branch of precision
    proba, pred = softmax(z), z.argmax(axis=1)
    assert brier_score(proba, y) == brier_score_loss(y, proba, labels=np.arange(10))
    confusion = confusion_counts(y, pred, 10)
    assert np.array_equal(confusion, confusion_matrix(y, pred, labels=np.arange(10)))
    expected = precision_recall_fscore_support(y, pred, labels=np.arange(10), zero_division=0)
    for got, want in zip(per_class_scores(confusion), expected, strict=True):
        assert np.array_equal(got, want)
    assert per_class_scores(confusion)[0][9] == 0.0
