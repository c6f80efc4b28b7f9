"""Full-batch L-BFGS: reaches scikit-learn's regularized optimum; the callback can stop it."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from shipped import lbfgs
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from mnist_softmax.model.fit_step import FitStep
from mnist_softmax.model.lbfgs import fit_lbfgs
from mnist_softmax.model.numerics import softmax


def _digits(n: int = 400):
    X, y = load_digits(return_X_y=True)
    X = (X[:n] - X[:n].mean(axis=0)) / (X[:n].std(axis=0) + 1.0)
    return X, y[:n]


def _fit(X, y, l2, cfg=None, stop_at=None):
    steps: list[FitStep] = []

    def record(step: FitStep) -> bool:
        steps.append(replace(step, W=step.W.copy(), b=step.b.copy()))
        return step.epoch == stop_at

    cfg = cfg or lbfgs(max_iter=500, tol=1e-8)
    result = fit_lbfgs(X, y, 10, cfg, l2, record)
    return steps, result


@pytest.mark.parametrize("l2", [1e-2, 1e-3])
def test_probabilities_match_sklearn_optimum(l2):
    X, y = _digits()
    steps, _ = _fit(X, y, l2)
    # sklearn minimizes C * sum(CE) + ||W||^2 / 2 = C n * (mean CE + ||W||^2 / (2 C n)).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=5000).fit(X, y)
    proba = softmax(X @ steps[-1].W + steps[-1].b)
    np.testing.assert_allclose(proba, ref.predict_proba(X), atol=2e-4)


def test_iterations_are_reported_and_loss_falls():
    X, y = _digits()
    steps, result = _fit(X, y, 1e-2)
    assert [s.epoch for s in steps] == list(range(1, len(steps) + 1))
    assert len(steps) == result.nit
    assert steps[-1].train_nll < steps[0].train_nll < np.log(10)
    assert steps[-1].train_acc > 0.95 and np.isnan(steps[-1].lr)


def test_callback_stops_and_max_iter_caps():
    X, y = _digits()
    steps, _ = _fit(X, y, 1e-3, stop_at=3)
    assert len(steps) == 3
    steps, result = _fit(X, y, 1e-3, cfg=lbfgs(max_iter=5))
    assert len(steps) == 5 and result.nit == 5


def test_float32_data_gives_float32_weights_near_float64():
    X, y = _digits()
    s64, _ = _fit(X, y, 1e-2)
    s32, _ = _fit(X.astype(np.float32), y, 1e-2, cfg=lbfgs(max_iter=500, tol=1e-5))
    assert s32[-1].W.dtype == np.float32
    np.testing.assert_allclose(
        softmax(X @ s32[-1].W + s32[-1].b), softmax(X @ s64[-1].W + s64[-1].b), atol=2e-3
    )
