"""The model's output kinds: softmax (dense probabilities) or sparsemax (exact zeros).

``model.output`` picks one at training time and the model file records it, so every later
caller (calibrate, evaluate, the pyfunc, retrain scoring) asks this module, with the model's
own kind, for its probabilities and its loss, instead of assuming softmax. Each kind pairs a
link with the loss it is trained and calibrated on: softmax with the NLL (cross-entropy),
sparsemax with the sparsemax loss (Martins & Astudillo 2016), whose gradient in the logits
is ``p - onehot(y)`` for both. The math itself lives in :mod:`mnist_softmax.model.numerics`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from mnist_softmax.model.numerics import (
    BlockPass,
    Pass,
    forward_backward,
    forward_backward_blocks,
    nll,
    softmax,
    softmax_residuals,
    sparsemax,
    sparsemax_forward_backward,
    sparsemax_loss,
    sparsemax_residuals,
)

OUTPUTS = ("softmax", "sparsemax")
# the name of each kind's loss in curves, metrics and logs (train/nll, val/sparsemax_loss, ...)
LOSS_NAMES = {"softmax": "nll", "sparsemax": "sparsemax_loss"}

_PROBA = {"softmax": softmax, "sparsemax": sparsemax}
_LOSS = {"softmax": nll, "sparsemax": sparsemax_loss}
_PASS = {"softmax": forward_backward, "sparsemax": sparsemax_forward_backward}
_RESIDUALS = {"softmax": softmax_residuals, "sparsemax": sparsemax_residuals}


def check_output(output: str) -> str:
    """Return ``output`` if it is a known kind, else raise ValueError naming the choices."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown model output {output!r} (allowed: {' | '.join(OUTPUTS)})")
    return output


def probabilities(logits: np.ndarray, output: str, temperature: float = 1.0) -> np.ndarray:
    """Return the ``output`` link of ``logits / T``, float64 of shape (n_samples, n_classes)."""
    return _PROBA[check_output(output)](logits, temperature)


def output_loss(logits: np.ndarray, y: np.ndarray, output: str, temperature: float = 1.0) -> float:
    """Return the mean loss ``output`` is trained and calibrated on, for ``logits / T``.

    logits : ndarray of shape (n_samples, n_classes); y : ndarray of shape (n_samples,), int
    """
    return _LOSS[check_output(output)](logits, y, temperature)


def fused_pass(output: str) -> Callable[..., Pass]:
    """Return the fused training pass ``(W, b, X, y, l2) -> Pass`` of ``output``."""
    return _PASS[check_output(output)]


def fused_block_pass(output: str) -> Callable[..., BlockPass]:
    """Return the fused pass of K stacked models ``(W, b, X, y, l2, n_classes, Z, dW)``."""
    return functools.partial(forward_backward_blocks, residuals=_RESIDUALS[check_output(output)])
