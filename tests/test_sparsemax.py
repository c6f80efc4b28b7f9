"""Sparsemax regression: its loss and gradient, the output kind in the model file, calibration
by the Brier score, the sparsity metrics, and training with both optimizers."""

from __future__ import annotations

import numpy as np
import pytest
from shipped import calibration_args, evaluation_args, shipped_config, temperature_args

from mnist_softmax.atomic import load_npz, save_npz
from mnist_softmax.data.scaler import Scaler
from mnist_softmax.data.splits import Split
from mnist_softmax.errors import DataError
from mnist_softmax.evaluation.evaluate import evaluate, score_logits
from mnist_softmax.evaluation.temperature import calibrate, criterion, fit_temperature
from mnist_softmax.model.model_file import SoftmaxModel, load_model, save_model
from mnist_softmax.model.numerics import (
    forward_backward,
    softmax,
    sparsemax,
    sparsemax_forward_backward,
    sparsemax_loss,
)
from mnist_softmax.model.outputs import fused_pass, output_loss, probabilities
from mnist_softmax.model.training import train

NAMES = [str(k) for k in range(10)]


def _problem(n: int, d: int, k: int, dtype: str = "float64", seed: int = 0, scale: float = 0.8):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    y = rng.integers(0, k, size=n)
    W = rng.normal(scale=scale, size=(d, k)).astype(dtype)
    return X, y, W, rng.normal(size=k).astype(dtype)


def _fenchel_young(Z: np.ndarray, y: np.ndarray) -> float:
    """The sparsemax loss from its variational form, row by row (Blondel et al. 2020):
    max_p <z, p> - ||p||^2 / 2 over the simplex, attained at p = sparsemax(z), + 1/2 - z_y."""
    P = sparsemax(Z)
    rows = [Z[i] @ P[i] - P[i] @ P[i] / 2 + 0.5 - Z[i, y[i]] for i in range(len(y))]
    return float(np.mean(rows))


def test_sparsemax_loss_matches_its_variational_form_and_known_values():
    X, y, W, b = _problem(40, 5, 4)
    Z = X @ W + b
    assert sparsemax_loss(Z, y) == pytest.approx(_fenchel_young(Z, y), rel=1e-12)
    assert sparsemax_loss(Z / 0.7, y) == pytest.approx(sparsemax_loss(Z, y, 0.7), rel=1e-12)
    # true class ahead by >= 1: zero loss; a tie of two classes: 1/4 (p = 1/2 each)
    assert sparsemax_loss(np.array([[3.0, 1.5, 0.0]]), np.array([0])) == 0.0
    assert sparsemax_loss(np.array([[1.0, 1.0, -5.0]]), np.array([0])) == pytest.approx(0.25)
    huge = np.array([[1e300, 0.0, -1e300]])  # translation invariance keeps it finite
    assert sparsemax_loss(huge, np.array([0])) == 0.0


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize(("n", "d", "k"), [(7, 3, 2), (25, 5, 4), (30, 6, 10)])
def test_sparsemax_gradient_matches_finite_differences(n, d, k, l2):
    """dW = X^T (sparsemax(Z) - Y) / n + l2 W: the loss is piecewise quadratic, so central
    differences are exact up to rounding unless a step crosses a support change (rare)."""
    X, y, W, b = _problem(n, d, k, seed=n)
    out = sparsemax_forward_backward(W, b, X, y, l2)
    eps = 1e-6

    def loss(W_, b_):
        return sparsemax_forward_backward(W_, b_, X, y, l2).loss

    num_W = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        E = np.zeros_like(W)
        E[idx] = eps
        num_W[idx] = (loss(W + E, b) - loss(W - E, b)) / (2 * eps)
    num_b = np.array([(loss(W, b + eps * e) - loss(W, b - eps * e)) / (2 * eps) for e in np.eye(k)])
    np.testing.assert_allclose(out.dW, num_W, atol=1e-7)
    np.testing.assert_allclose(out.db, num_b, atol=1e-7)
    P = sparsemax(X @ W + b)
    assert out.nll == pytest.approx(sparsemax_loss(X @ W + b, y), rel=1e-12)
    assert out.loss == pytest.approx(out.nll + l2 / 2 * (W**2).sum(), rel=1e-12)
    np.testing.assert_allclose(out.db, (P - np.eye(k)[y]).mean(axis=0), atol=1e-12)


def test_sparsemax_pass_in_float32_stays_float32_and_close_to_float64():
    X, y, W, b = _problem(200, 20, 10, scale=0.3)
    ref = sparsemax_forward_backward(W, b, X, y, 0.01)
    out = sparsemax_forward_backward(*(a.astype(np.float32) for a in (W, b, X)), y, 0.01)
    assert out.dW.dtype == out.db.dtype == np.float32
    assert out.loss == pytest.approx(ref.loss, rel=1e-5)
    np.testing.assert_allclose(out.dW, ref.dW, atol=1e-5)
    assert out.n_correct == ref.n_correct


def test_outputs_dispatch_to_the_one_definition_each():
    X, y, W, b = _problem(30, 4, 5)
    Z = X @ W + b
    np.testing.assert_array_equal(probabilities(Z, "sparsemax", 2.0), sparsemax(Z, 2.0))
    np.testing.assert_array_equal(probabilities(Z, "softmax", 2.0), softmax(Z, 2.0))
    assert output_loss(Z, y, "sparsemax") == sparsemax_loss(Z, y)
    assert fused_pass("softmax") is forward_backward
    assert fused_pass("sparsemax") is sparsemax_forward_backward
    with pytest.raises(ValueError, match="unknown model output 'argmax'"):
        probabilities(Z, "argmax")


def _model(output: str) -> SoftmaxModel:
    rng = np.random.default_rng(0)
    return SoftmaxModel(
        W=rng.normal(size=(4, 3)).astype(np.float32),
        b=rng.normal(size=3).astype(np.float32),
        class_names=np.array(["a", "b", "c"]),
        scaler=Scaler(mean=rng.uniform(0, 100, size=4), scale=rng.uniform(1, 50, size=4)),
        image_shape=np.array([2, 2]),
        output=output,
    )


def test_model_file_records_the_output_and_predicts_exact_zeros(tmp_path):
    save_model(tmp_path / "m.npz", _model("sparsemax"))
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.output == "sparsemax"
    X = np.random.default_rng(1).integers(0, 256, size=(50, 4)).astype(np.uint8)
    p = loaded.predict_proba(X, temperature=0.5)
    np.testing.assert_array_equal(p, sparsemax(loaded.logits(X), 0.5))
    assert (p == 0).any() and np.allclose(p.sum(axis=1), 1)


def test_model_file_without_output_is_softmax_and_a_bad_kind_is_refused(tmp_path):
    save_model(tmp_path / "m.npz", _model("sparsemax"))
    arrays = load_npz(tmp_path / "m.npz")
    legacy = {k: v for k, v in arrays.items() if k != "output"}  # written before output kinds
    save_npz(tmp_path / "old.npz", **legacy)
    assert load_model(tmp_path / "old.npz").output == "softmax"
    save_npz(tmp_path / "bad.npz", **{**arrays, "output": np.array("argmax")})
    with pytest.raises(DataError, match=r"output 'argmax' is not one of softmax \| sparsemax"):
        load_model(tmp_path / "bad.npz")


def _sparse_logits(n: int = 4000, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return logits and labels drawn from sparsemax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=0.5, size=(n, k))
    p = sparsemax(z)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z, y


def test_brier_temperature_recovers_a_known_scale_and_matches_a_grid():
    z, y = _sparse_logits()
    assert fit_temperature(3.0 * z, y, **temperature_args(output="sparsemax")) == pytest.approx(
        3.0, rel=0.05
    )
    z, y = z[:1000], y[:1000]
    grid = np.exp(np.linspace(np.log(1.0), np.log(4.0), 401))  # steps of 0.35%
    best = grid[np.argmin([criterion(2.0 * z, y, "sparsemax", t) for t in grid])]
    assert fit_temperature(2.0 * z, y, **temperature_args(output="sparsemax")) == pytest.approx(
        best, rel=4e-3
    )


def test_sparsemax_calibration_metrics_keep_accuracy_and_respect_bounds():
    z, y = _sparse_logits(n=1000, seed=1)
    result = calibrate(3.0 * z, y, **calibration_args(output="sparsemax"))
    assert result.criterion == "brier" and result.loss_calibrated < result.loss
    assert result.acc == np.mean(z.argmax(axis=1) == y)
    metrics = result.to_metrics()
    assert set(metrics) == {"temperature", "at_bound", "brier_worse", "val"}
    assert set(metrics["val"]) == {"acc", "brier", "brier_calibrated", "ece", "ece_calibrated"}
    bounded = calibrate(3.0 * z, y, **calibration_args(t_min=0.5, t_max=1.5, output="sparsemax"))
    assert bounded.temperature == pytest.approx(1.5, rel=1e-3) and bounded.at_bound


def test_sparse_scores_count_zeros_support_and_leave_out_an_infinite_nll():
    z, y = _sparse_logits(n=600, seed=2)
    z = 4.0 * z  # sharp: many single-class rows and some true classes at p = 0
    scores = score_logits(z, y, 1.0, 15, "uniform", "sparsemax").values
    p = sparsemax(z)
    p_true = p[np.arange(len(y)), y]
    assert scores["true_zero"] == np.mean(p_true == 0) > 0 and scores["nll"] == np.inf
    assert scores["support"] == pytest.approx((p > 0).sum(axis=1).mean())
    assert scores["single"] == np.mean((p > 0).sum(axis=1) == 1) > 0
    assert scores["brier"] == pytest.approx(((p - np.eye(10)[y]) ** 2).sum(axis=1).mean())
    assert scores["sparsemax_loss"] == sparsemax_loss(z, y)
    result = evaluate(
        z,
        y,
        1.5,
        NAMES,
        np.random.default_rng(0),
        **evaluation_args(bootstrap_samples=50, output="sparsemax"),
    )
    test = result.metrics["test"]
    assert "nll" not in test and "nll_calibrated" not in test  # JSON holds finite numbers only
    assert test["support_calibrated"] > test["support"] and test["true_zero"] > 0
    assert test["ece_ci_low"] <= test["ece"] <= test["ece_ci_high"]
    np.testing.assert_array_equal(result.proba_calibrated, sparsemax(z, 1.5))


def test_finite_sparsemax_nll_is_reported():
    z = np.array([[1.0, 0.9, 0.8], [0.2, 1.0, 0.9]])  # every class in the support
    y = np.array([0, 2])
    test = evaluate(
        z,
        y,
        1.0,
        ["a", "b", "c"],
        np.random.default_rng(0),
        **evaluation_args(bootstrap_samples=0, output="sparsemax"),
    ).metrics["test"]
    p = sparsemax(z)
    assert test["nll"] == pytest.approx(-np.log(p[[0, 1], y]).mean()) and test["true_zero"] == 0


@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_sparsemax_trains_with_both_optimizers(digits, optimizer):
    small = ["data.image_shape=[8,8]", "model=sparsemax"]
    small += ["optimizer=lbfgs", "optimizer.max_iter=30"] if optimizer == "lbfgs" else [
        "optimizer.batch_size=32", "optimizer.epochs=5"]  # fmt: skip
    result = train(*digits, shipped_config(*small))
    hist, summary = result.history, result.summary
    assert list(hist.columns[:4]) == ["epoch", "train/sparsemax_loss", "train/acc",
                                      "val/sparsemax_loss"]  # fmt: skip
    assert summary["best_epoch"] == int(hist.loc[hist["val/sparsemax_loss"].idxmin(), "epoch"])
    assert hist["train/sparsemax_loss"].iloc[-1] < hist["train/sparsemax_loss"].iloc[0]
    assert summary["val"]["acc"] > 0.85 and "nll" not in summary["val"]
    assert result.model.output == "sparsemax" and result.model.W.dtype == np.float32
    p = result.model.predict_proba(digits[1].X)
    assert (p == 0).mean() > 0.5  # most classes get exactly zero


def test_sparsemax_early_stopping_keeps_the_best_val_epoch(digits):
    train_split, val, scaler = digits
    noisy = Split(val.X, np.random.default_rng(0).permutation(val.y))  # unlearnable
    cfg = shipped_config("data.image_shape=[8,8]", "model=sparsemax", "optimizer.batch_size=32",
                         "optimizer.epochs=30", "optimizer.patience=2",
                         "optimizer.schedule=constant")  # fmt: skip
    result = train(train_split, noisy, scaler, cfg)
    best = result.summary["best_epoch"]
    assert result.summary["epochs_run"] == best + 2 < 30
    assert result.history["val/sparsemax_loss"].iloc[best - 1] == (
        result.history["val/sparsemax_loss"].min()
    )
