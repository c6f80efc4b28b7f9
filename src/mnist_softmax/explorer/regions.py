"""Decision regions on toy data: the sigmoid of one feature, and three classes on a plane.

Two small data sets, drawn once from fixed seeds, stand for the articles' pictures: points of two
classes along one feature (logistic regression, ``sigmoid(w x + b)`` cut at 0.5), and three
clouds on a plane (softmax regression with one ``(w1, w2, b)`` per class, regions by argmax).
The probabilities, the losses and the gradient-descent step are the project's own numerics
(:func:`probabilities`, :func:`nll`, :func:`forward_backward`), never a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from scipy.special import expit

from mnist_softmax.explorer.playground import probabilities
from mnist_softmax.model.numerics import forward_backward, nll, predict_logits

LINE_RANGE = (0.0, 10.0)  # the one feature's axis
PLANE_RANGE = (-4.0, 4.0)  # both axes of the plane
N_CLASSES = 3  # classes on the plane; theta holds (w1, w2, b) for each


@dataclass(frozen=True)
class Toy:
    """A toy data set. X : ndarray of shape (n_samples, n_features); y : (n_samples,), int."""

    X: np.ndarray
    y: np.ndarray

    def to_json(self) -> dict[str, list]:
        return {"X": self.X.round(4).tolist(), "y": self.y.tolist()}


@cache
def line_data() -> Toy:
    """Twenty points on one feature: class 0 mostly below 5, class 1 mostly above (overlap)."""
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.uniform(0.5, 5.8, 10), rng.uniform(4.2, 9.5, 10)])
    return Toy(X=x[:, None], y=np.repeat([0, 1], 10))


@cache
def plane_data() -> Toy:
    """Three round clouds of 25 points on the plane, one per class."""
    rng = np.random.default_rng(12)
    centres = np.array([[-1.8, -1.2], [1.8, -1.2], [0.0, 1.9]])
    X = np.concatenate([c + 0.75 * rng.standard_normal((25, 2)) for c in centres])
    return Toy(X=X, y=np.repeat(np.arange(N_CLASSES), 25))


def sigmoid_curve(w: float, b: float, n: int = 101) -> dict[str, Any]:
    """Return ``sigmoid(w x + b)`` along the feature, the 0.5 cut and the data's log-loss.

    The cut is where ``w x + b = 0``: ``x = -b / w`` (None when ``w = 0``: no cut, or all of it).
    The loss is the 2-class cross-entropy of the logits ``(0, w x + b)``, whose softmax is
    ``(1 - sigmoid, sigmoid)``: the binary case of the softmax regression's own loss.
    """
    data = line_data()
    x = np.linspace(*LINE_RANGE, n)
    s = w * data.X[:, 0] + b
    loss = nll(np.column_stack([np.zeros_like(s), s]), data.y)
    return {
        "x": x.tolist(),
        "p": expit(w * x + b).tolist(),
        "cut": -b / w if w != 0 else None,
        "loss": loss,
        "data": data.to_json(),
    }


def split_theta(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(W, b)`` of shapes (2, 3) and (3,) from theta = (w1, w2, b) per class."""
    rows = theta.reshape(N_CLASSES, 3)
    return rows[:, :2].T.copy(), rows[:, 2].copy()


def plane_regions(theta: np.ndarray, temperature: float, kind: str, n: int) -> dict[str, Any]:
    """Return the plane's grid coloured by argmax and shaded by the top probability.

    ``cls`` and ``top`` are row-major n x n lists from the top-left corner (x1 left to right, x2
    top to bottom); bit k of ``zeros`` is set where class k gets exactly zero probability
    (sparsemax and argmax only), and ``zero_share`` is the share of the plane where each class
    gets zero. ``loss`` is the data's cross-entropy at ``T = 1``, the quantity
    the gradient step lowers.
    """
    W, b = split_theta(theta)
    axis = np.linspace(*PLANE_RANGE, n)
    x1, x2 = np.meshgrid(axis, axis[::-1])
    grid = np.column_stack([x1.ravel(), x2.ravel()])
    p = probabilities(predict_logits(grid, W, b), temperature, kind)
    zeros = (p == 0) @ (1 << np.arange(N_CLASSES))
    data = plane_data()
    return {
        "n": n,
        "range": list(PLANE_RANGE),
        "cls": p.argmax(axis=1).tolist(),
        "top": p.max(axis=1).round(4).tolist(),
        "zeros": zeros.tolist(),
        "zero_share": (p == 0).mean(axis=0).tolist(),
        "loss": nll(predict_logits(data.X, W, b), data.y),
        "data": data.to_json(),
    }


def gradient_step(theta: np.ndarray, lr: float) -> dict[str, Any]:
    """Take one full-batch gradient-descent step on the plane data's cross-entropy.

    Returns the new theta and the loss before and after: with a small enough ``lr`` the loss
    goes down, with a large one a person can watch it overshoot.
    """
    W, b = split_theta(theta)
    data = plane_data()
    step = forward_backward(W, b, data.X, data.y, l2=0.0)
    W, b = W - lr * step.dW, b - lr * step.db
    new = np.column_stack([W.T, b]).ravel()
    after = nll(predict_logits(data.X, W, b), data.y)
    return {"theta": new.tolist(), "loss_before": step.loss, "loss_after": after}
