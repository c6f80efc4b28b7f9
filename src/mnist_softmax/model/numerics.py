"""The math of softmax regression, each piece defined once for every caller.

Training, calibration, evaluation, retrain scoring and serving all turn logits into
probabilities, log-probabilities and a negative log-likelihood through these functions::

    p      = softmax(z / T)                       (row max subtracted: exp never overflows)
    log p  = z / T - logsumexp(z / T)              (never log(softmax(z)): finite for any z)
    nll    = -1/n * sum_i log p_i[y_i]
    p      = sparsemax(z / T)                     (projection onto the simplex: exact zeros)
    L      = sparsemax loss of z / T               (Martins & Astudillo 2016: finite, convex)

They compute in float64 whatever the dtype of the logits, so a metric does not depend on
whether the model was trained in float32 or float64. The exceptions are the fused training
pass :func:`forward_backward_blocks` (softmax or sparsemax, by its ``residuals``), written once
for K models stacked side by side (a single model, :func:`forward_backward` and
:func:`sparsemax_forward_backward`, is K = 1): it reuses one buffer for the logits, the
probabilities and the gradient in the weights' dtype, because a minibatch step must cost no
more than its two matrix products. Their results are checked
against :func:`nll` and :func:`sparsemax_loss`, and their gradients by finite differences, in
the tests. Which pair an output kind uses is :mod:`mnist_softmax.model.outputs`' job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax as _log_softmax
from scipy.special import softmax as _softmax


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Return ``softmax(logits / temperature)`` row by row, float64.

    logits : ndarray of shape (n_samples, n_classes); returns the same shape, rows sum to 1.
    """
    return _softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Return ``z / T - logsumexp(z / T)`` row by row, float64, shape of ``logits``."""
    return _log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Return the mean negative log-likelihood of labels ``y`` under ``softmax(logits / T)``.

    A saturated probability costs its true log-loss (1000 nats for a logit gap of 1000), not
    the ~36 nats that clipping probabilities at the float eps would give.

    logits : ndarray of shape (n_samples, n_classes); y : ndarray of shape (n_samples,), int
    """
    logp = log_softmax(logits, temperature)
    return float(-np.mean(np.take_along_axis(logp, np.asarray(y)[:, None], axis=1)))


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Return the share of rows whose largest logit is the true class (any T > 0 agrees)."""
    return float(np.mean(np.asarray(logits).argmax(axis=1) == np.asarray(y)))


def sparsemax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Return ``sparsemax(logits / temperature)`` row by row, float64 (Martins & Astudillo 2016).

    The Euclidean projection of ``z`` onto the probability simplex: ``p = max(z - tau, 0)`` with
    the threshold ``tau`` chosen so ``p`` sums to 1. Unlike softmax it gives exact zeros to
    classes far enough below the top; as ``T -> 0`` it becomes argmax, as ``T`` grows, uniform.

    logits : ndarray of shape (n_samples, n_classes); returns the same shape, rows sum to 1.
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    return _simplex_projection(z - z.max(axis=1, keepdims=True))[0]


def sparsemax_loss(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Return the mean sparsemax loss of labels ``y`` for ``logits / T`` (float64).

    Martins & Astudillo (2016), eq. 16, per row with support ``S`` and threshold ``tau``::

        L(z, y) = -z_y + 1/2 sum_{j in S} (z_j^2 - tau^2) + 1/2
                = -z_y + 1/2 sum_j p_j (z_j + tau) + 1/2     (p_j = z_j - tau on S, 0 off it)

    Convex in ``z``, translation invariant, always finite (unlike the NLL of a sparse ``p``),
    zero once the true logit leads every other by at least 1; its gradient is
    ``sparsemax(z) - onehot(y)``.

    logits : ndarray of shape (n_samples, n_classes); y : ndarray of shape (n_samples,), int
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(_sparsemax_losses(z, np.asarray(y))[0]))


def _simplex_projection(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``p = max(z - tau, 0)`` and ``tau`` of shape (n_samples, 1), in the dtype of ``z``.

    With the row sorted in decreasing order, the support holds the first ``k`` entries,
    ``k = max{j : 1 + j z_(j) > z_(1) + ... + z_(j)}``, and ``tau = (z_(1) + ... + z_(k) - 1) / k``.
    ``z`` should have its row max subtracted (translation invariance keeps the sums small).
    """
    z_sorted = -np.sort(-z, axis=1)
    cumsum = np.cumsum(z_sorted, axis=1)
    j = np.arange(1, z.shape[1] + 1, dtype=z.dtype)
    k = (1 + j * z_sorted > cumsum).sum(axis=1, keepdims=True)  # the condition holds on a prefix
    tau = (np.take_along_axis(cumsum, k - 1, axis=1) - 1) / k.astype(z.dtype)
    return np.maximum(z - tau, 0), tau


def _sparsemax_losses(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the per-row sparsemax losses (n_samples,) and ``p = sparsemax(z)``, dtype of ``z``."""
    p, tau = _simplex_projection(z)
    rows = np.arange(len(y))
    losses = 0.5 * np.einsum("ij,ij->i", p, z + tau) - z[rows, y] + 0.5
    return losses, p


def predict_logits(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return logits ``X W + b`` of shape (n_samples, n_classes) for scaled features ``X``."""
    return X @ W + b


@dataclass(frozen=True)
class Pass:
    """One forward and backward pass: what an optimizer step needs, and free train metrics.

    loss : penalized loss; nll : its data term alone (the mean cross-entropy; the mean
    sparsemax loss for :func:`sparsemax_forward_backward`); n_correct : argmax hits
    dW : ndarray of shape (n_features, n_classes); db : ndarray of shape (n_classes,)
    """

    loss: float
    nll: float
    n_correct: int
    dW: np.ndarray
    db: np.ndarray


@dataclass(frozen=True)
class BlockPass:
    """One forward and backward pass of K models stacked side by side (see below).

    nll : ndarray of shape (K,), each model's mean data loss on the batch (cross-entropy, or
    the sparsemax loss); n_correct : ndarray of shape (K,), argmax hits of each model
    dW : ndarray of shape (n_features, K * n_classes); db : ndarray of shape (K * n_classes,)
    """

    nll: np.ndarray
    n_correct: np.ndarray
    dW: np.ndarray
    db: np.ndarray


def forward_backward(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float) -> Pass:
    """Return the penalized loss, its gradients and train metrics of one batch in one pass.

    The loss is the mean cross-entropy plus an L2 penalty on the weights (bias unregularized)::

        loss = nll + l2/2 * ||W||^2
        dW   = X^T (P - Y) / n + l2 * W,      db = sum_i (P - Y)_i / n

    The fused training pass (see the module docstring), in the dtype of ``W``: the K = 1 case
    of :func:`forward_backward_blocks`, so a single fit and a stacked sweep share its arithmetic.

    Parameters
    ----------
    W : ndarray of shape (n_features, n_classes)
    b : ndarray of shape (n_classes,)
    X : ndarray of shape (n_samples, n_features), scaled features in the dtype of ``W``
    y : ndarray of shape (n_samples,), integer class indices
    l2 : float, L2 penalty on ``W``
    """
    return _one_model(softmax_residuals, W, b, X, y, l2)


def sparsemax_forward_backward(
    W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float
) -> Pass:
    """Return the penalized sparsemax loss, its gradients and train metrics of one batch.

    The counterpart of :func:`forward_backward` for a sparsemax output (same role, same
    :class:`Pass`, in the dtype of ``W``; ``Pass.nll`` carries the mean sparsemax loss, the
    data term of this objective, since the NLL of a sparse ``p`` is often infinite)::

        loss = mean L(z_i, y_i) + l2/2 * ||W||^2          (see :func:`sparsemax_loss`)
        dW   = X^T (P - Y) / n + l2 * W,      db = sum_i (P - Y)_i / n,      P = sparsemax(Z)

    Parameters as in :func:`forward_backward`.
    """
    return _one_model(sparsemax_residuals, W, b, X, y, l2)


Residuals = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _one_model(
    residuals: Residuals, W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float
) -> Pass:
    """Run the block pass on one model (K = 1) and add the penalized loss L-BFGS minimizes."""
    n_classes = len(b)
    Z, dW = np.empty((len(y), n_classes), W.dtype), np.empty_like(W)
    l2_cols = np.full(n_classes, l2, W.dtype)
    out = forward_backward_blocks(W, b, X, y, l2_cols, n_classes, Z, dW, residuals)
    data_loss = float(out.nll[0])
    loss = data_loss + 0.5 * l2 * float(np.vdot(W, W))
    return Pass(loss=loss, nll=data_loss, n_correct=int(out.n_correct[0]), dW=out.dW, db=out.db)


def softmax_residuals(blocks: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each model's mean cross-entropy (K,) and ``P - Y`` of shape (n, K * n_classes).

    blocks : ndarray of shape (n, K, n_classes), logits with each block's max subtracted, a
    view of a C-contiguous buffer that is overwritten (``P - Y`` is returned in it).
    """
    n, k, n_classes = blocks.shape
    G = blocks.reshape(n, k * n_classes)  # the same buffer
    flat = G.reshape(-1)  # flat[true] is (image i, model j, class y_i), i-major
    true = np.arange(n * k) * n_classes + np.repeat(y, k)
    z_true = flat[true].reshape(n, k)
    np.exp(blocks, out=blocks)
    total = blocks.sum(axis=2, keepdims=True)
    # logsumexp(z) - z_y, averaged per model over contiguous rows (pairwise sum: a single
    # model's mean, bit for bit)
    batch_nll = np.ascontiguousarray((np.log(total[:, :, 0]) - z_true).T).mean(axis=1)
    blocks /= total  # P
    flat[true] -= 1.0  # P - Y without building the one-hot Y
    return batch_nll, G


def sparsemax_residuals(blocks: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each model's mean sparsemax loss (K,) and ``P - Y``, P = sparsemax per block.

    Each (row, block) pair is one projection onto the simplex, so the blocks are flattened to
    rows of ``n_classes`` and projected together. ``blocks`` as in :func:`softmax_residuals`
    (read, not changed); ``P - Y`` is a new array of shape (n, K * n_classes).
    """
    n, k, n_classes = blocks.shape
    y_rows = np.repeat(y, k)  # row i * k + j of the flattened blocks is image i, model j
    losses, G = _sparsemax_losses(blocks.reshape(n * k, n_classes), y_rows)
    G[np.arange(n * k), y_rows] -= 1  # P - Y without building the one-hot Y
    batch_loss = np.ascontiguousarray(losses.reshape(n, k).T).mean(axis=1)
    return batch_loss, G.reshape(n, k * n_classes)


def forward_backward_blocks(
    W: np.ndarray,
    b: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    l2: np.ndarray,
    n_classes: int,
    Z: np.ndarray,
    dW: np.ndarray,
    residuals: Residuals = softmax_residuals,
) -> BlockPass:
    """Return the fused pass of K models at once, whose weights are column blocks.

    Why blocks: a sweep stacks K models as ``W = [W_1 | ... | W_K]`` so that one batch costs
    two matrix products for all of them (a (256 x 784) @ (784 x 10) product leaves BLAS idle;
    a (784 x 10 K) one does not). The link, the loss and ``P - Y`` are taken per block of
    ``n_classes`` columns by ``residuals`` (:func:`softmax_residuals` or
    :func:`sparsemax_residuals`), and ``l2`` differs per block; a single model is K = 1
    (:func:`forward_backward`). The products write into the caller's buffers ``Z`` and
    ``dW``: no allocation of batch size per step.

    Parameters
    ----------
    W : ndarray of shape (n_features, K * n_classes)
    b : ndarray of shape (K * n_classes,)
    X : ndarray of shape (n_samples, n_features), scaled features in the dtype of ``W``
    y : ndarray of shape (n_samples,), integer class indices
    l2 : ndarray of shape (K * n_classes,), each block's L2 penalty repeated per column
    n_classes : columns per block
    Z : ndarray of shape (>= n_samples, K * n_classes), scratch for logits and ``P - Y``
    dW : ndarray of shape (n_features, K * n_classes), receives the weight gradient
    residuals : the output's loss and ``P - Y`` from the stabilized logits
    """
    n = len(y)
    logits = np.matmul(X, W, out=Z[:n])
    logits += b
    blocks = logits.reshape(n, len(b) // n_classes, n_classes)  # a view: row i, model k, class c
    n_correct = (blocks.argmax(axis=2) == y[:, None]).sum(axis=0)
    blocks -= blocks.max(axis=2, keepdims=True)  # stable: exp(z - max) <= 1
    data_loss, G = residuals(blocks, y)
    G /= n
    np.matmul(X.T, G, out=dW)
    dW += l2 * W
    return BlockPass(nll=data_loss, n_correct=n_correct, dW=dW, db=G.sum(axis=0))
