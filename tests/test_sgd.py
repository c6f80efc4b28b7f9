"""Minibatch SGD: schedules give the planned rates, training lowers the loss, deterministically."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest
from shipped import sgd

from mnist_softmax.model.fit_step import FitStep
from mnist_softmax.model.numerics import forward_backward
from mnist_softmax.model.sgd import fit_sgd, learning_rate
from mnist_softmax.model.sgd_stack import SGDStack


def _blobs(n: int = 600, d: int = 8, k: int = 3, seed: int = 0):
    """Overlapping Gaussian classes: learnable, but the loss keeps falling for many epochs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    centers = rng.normal(size=(k, d))
    return (centers[y] + rng.normal(scale=1.5, size=(n, d))).astype(np.float32), y


def _fit(cfg, seed: int = 0, X=None, y=None, l2: float = 1e-3) -> list[FitStep]:
    if X is None:
        X, y = _blobs()
    steps: list[FitStep] = []

    def keep(step: FitStep) -> bool:
        steps.append(replace(step, W=step.W.copy(), b=step.b.copy()))
        return False

    fit_sgd(X, y, 3, cfg, l2, np.random.default_rng(seed), keep)
    return steps


@pytest.mark.parametrize(
    ("t", "expected"), [(0, 0.5), (2.5, 0.5), (3, 0.05), (5.9, 0.05), (6, 0.005), (9.99, 0.0005)]
)
def test_step_schedule(t, expected):
    cfg = sgd(epochs=10, lr=0.5, schedule="step", step_epochs=3, step_gamma=0.1)
    assert learning_rate(cfg, t) == pytest.approx(expected)


@pytest.mark.parametrize(("t", "expected"), [(0, 0.2), (5, 0.1), (10, 0.0), (2.5, 0.1707107)])
def test_cosine_schedule(t, expected):
    cfg = sgd(epochs=10, lr=0.2, schedule="cosine")
    assert learning_rate(cfg, t) == pytest.approx(expected, abs=1e-7)


def test_warmup_then_cosine_and_constant():
    cfg = sgd(epochs=12, lr=0.4, schedule="cosine", warmup_epochs=2)
    got = [learning_rate(cfg, t) for t in (0, 1, 2, 7, 12)]
    np.testing.assert_allclose(got, [0.0, 0.2, 0.4, 0.2, 0.0], atol=1e-12)
    const = sgd(epochs=5, lr=0.3, schedule="constant", warmup_epochs=1)
    assert [learning_rate(const, t) for t in (0.5, 1, 4.9)] == pytest.approx([0.15, 0.3, 0.3])


def _one_update(nesterov: bool) -> SGDStack:
    """One step of a one-weight model from p = 1, v = 2 with gradient 0.5 (lr 0.1, mu 0.9)."""
    stack = SGDStack([sgd(momentum=0.9, nesterov=nesterov)], [0.0], 1, 1, np.float64)
    stack.W[:], stack.vW[:] = 1.0, 2.0
    stack.apply_momentum(np.array([[0.5]]), np.array([0.5]), np.float64(0.1), np.empty((1, 1)))
    return stack


def test_nesterov_update_formula():
    stack = _one_update(nesterov=True)
    assert stack.vW[0, 0] == pytest.approx(0.9 * 2 + 0.5)  # v = mu v + g
    assert stack.W[0, 0] == pytest.approx(1 - 0.1 * (0.5 + 0.9 * 2.3))  # p -= lr (g + mu v)
    assert stack.b[0] == pytest.approx(-0.1 * (0.5 + 0.9 * 0.5))  # from b = v = 0: v = g
    assert _one_update(nesterov=False).W[0, 0] == pytest.approx(1 - 0.1 * 2.3)  # p -= lr v


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
def test_more_epochs_lower_the_training_loss(momentum, nesterov):
    X, y = _blobs()
    cfg = sgd(epochs=8, batch_size=32, lr=0.05, momentum=momentum, nesterov=nesterov)
    losses = [forward_backward(s.W, s.b, X, y, 1e-3).loss for s in _fit(cfg, X=X, y=y)]
    assert losses[-1] < losses[0] - 0.01 and losses[0] < np.log(3)
    assert losses[-1] <= min(losses) + 1e-4  # the cosine tail settles at the lowest loss


def test_same_seed_same_weights_bit_for_bit():
    cfg = sgd(epochs=3, batch_size=50)
    a, b, c = _fit(cfg, seed=7), _fit(cfg, seed=7), _fit(cfg, seed=8)
    assert a[-1].W.tobytes() == b[-1].W.tobytes() and a[-1].b.tobytes() == b[-1].b.tobytes()
    assert a[-1].W.tobytes() != c[-1].W.tobytes()  # the seed does change the batch order


def test_weights_keep_the_data_dtype_and_callback_stops():
    X, y = _blobs()
    seen: list[int] = []

    def stop_at_two(step: FitStep) -> bool:
        seen.append(step.epoch)
        assert step.W.dtype == np.float64 and 0 <= step.train_acc <= 1
        return step.epoch == 2

    fit_sgd(X.astype(np.float64), y, 3, sgd(epochs=9), 0.0, np.random.default_rng(0), stop_at_two)
    assert seen == [1, 2]


def test_epoch_train_metrics_track_full_pass():
    """The train curve is averaged over the epoch's batches: close to a full pass at the end."""
    X, y = _blobs()
    last = _fit(sgd(epochs=10, batch_size=20, lr=0.02))[-1]
    full = forward_backward(last.W, last.b, X, y, 0.0).loss
    assert last.train_nll == pytest.approx(full, rel=0.05)
    assert last.lr == pytest.approx(learning_rate(sgd(epochs=10, lr=0.02), 9))


def test_a_config_view_trains_the_same_weights_read_once():
    """fit_sgd reads a stage's checked config view once (plain_config), bit for bit alike."""
    from mnist_softmax.model.sgd import plain_config
    from mnist_softmax.scoped_config import ScopedConfig

    cfg = sgd(epochs=3, batch_size=50)
    view = ScopedConfig(cfg, ("lr",), "test")  # lr alone: the other fields are undeclared
    with pytest.raises(Exception, match="not among its params"):
        plain_config(view)
    view = ScopedConfig(cfg, tuple(f.name for f in dataclasses.fields(cfg)), "test")
    plain = plain_config(view)
    assert type(plain) is type(cfg) and plain == cfg
    X, y = _blobs()
    a = _fit(cfg, X=X, y=y)[-1]
    b = _fit(view, X=X, y=y)[-1]
    assert np.array_equal(a.W, b.W) and np.array_equal(a.b, b.b)
