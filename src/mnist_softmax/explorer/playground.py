"""The softmax playground: one vector of logits through softmax, sparsemax or argmax, step by step.

The probabilities come from :mod:`mnist_softmax.model.numerics`, the functions training and
serving use; this module only adds what a person wants to see beside them: the intermediate
columns of the computation, the cross-entropy of a chosen true class and its gradient, and,
for two classes, the sigmoid of the logit difference (which the 2-class softmax equals).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit

from mnist_softmax.model.numerics import log_softmax
from mnist_softmax.model.outputs import OUTPUTS
from mnist_softmax.model.outputs import probabilities as output_probabilities

KINDS = ("softmax", "sparsemax", "argmax")


def probabilities(logits: np.ndarray, temperature: float, kind: str) -> np.ndarray:
    """Return ``kind(logits / temperature)`` row by row, float64, shape of ``logits``.

    ``argmax`` is the limit of both others as ``T -> 0``: the top class gets 1, or ties share it.

    logits : ndarray of shape (n_samples, n_classes)
    """
    if kind in OUTPUTS:  # the model outputs' own dispatcher; argmax is the page's extra
        return output_probabilities(logits, kind, temperature)
    top = logits == logits.max(axis=1, keepdims=True)
    return top / top.sum(axis=1, keepdims=True)


def explain(z: np.ndarray, temperature: float, kind: str, y: int | None) -> dict[str, Any]:
    """Return ``p`` for one logit vector with the steps that lead to it (the API's JSON).

    z : ndarray of shape (n_classes,); y : index of the true class, or None for no loss.

    The steps are ``z / T`` and ``z / T - max`` for every kind; softmax adds ``exp`` of the
    latter and its sum (``p = exp / sum``), sparsemax its threshold ``tau`` (``p = max(z / T -
    tau, 0)``, read back from ``p`` on the support) and the support itself.
    """
    p = probabilities(z[None, :], temperature, kind)[0]
    scaled = z / temperature
    shifted = scaled - scaled.max()
    steps: dict[str, Any] = {"scaled": scaled.tolist(), "shifted": shifted.tolist()}
    if kind == "softmax":
        exp = np.exp(shifted)
        steps.update(exp=exp.tolist(), sum=float(exp.sum()))
    elif kind == "sparsemax":
        support = p > 0
        steps.update(tau=float((scaled - p)[support][0]), support=support.tolist())
    out: dict[str, Any] = {"kind": kind, "t": temperature, "z": z.tolist(), "p": p.tolist()}
    out["steps"] = steps
    if len(z) == 2:  # the binary case: sigmoid((z1 - z2) / T) is softmax's first probability
        out["sigmoid"] = float(expit((z[0] - z[1]) / temperature))
    if y is not None:
        out.update(y=y, **_loss_and_gradient(z, temperature, kind, p, y))
    return out


def _loss_and_gradient(
    z: np.ndarray, temperature: float, kind: str, p: np.ndarray, y: int
) -> dict[str, Any]:
    """Return the cross-entropy ``-log p_y`` (None when ``p_y = 0``: infinite) and ``p - y``.

    ``p - onehot(y)`` is the gradient of the cross-entropy with respect to the scaled logits
    ``z / T`` for softmax; for sparsemax it is the gradient of the sparsemax loss instead.
    """
    if kind == "softmax":  # from log_softmax: finite even where p_y underflows to 0
        loss: float | None = float(-log_softmax(z[None, :], temperature)[0, y])
    else:
        loss = float(-np.log(p[y])) if p[y] > 0 else None
    grad = p - np.eye(len(z))[y]
    return {"loss": loss, "grad": grad.tolist()}
