"""Minibatch SGD with (Nesterov) momentum and a learning-rate schedule, for K models at once.

One engine trains K configs side by side (their weights stacked as ``W = [W_1 | ... | W_K]``,
one wide matrix product per batch for all of them; a sweep's stack) and a single run is its
K = 1 case, so the two cannot drift apart: what a sweep reports for a config is what
``dvc exp run`` of that config trains, bit for bit for K = 1 (the tests check it).

Speed on this machine is dominated by memory traffic, not arithmetic: gathering a shuffled copy
of X costs ~0.09 s, more than a full forward and backward pass. So the caller shuffles the
training set ONCE into a contiguous array and each epoch only permutes the order of the
contiguous batches (slices are views: no copy). Batches stay the same sets of images across
epochs, which on MNIST costs no measurable accuracy.

BLAS runs single-threaded for a single run: a 256-row batch is too small to split across
threads, and on a shared 2-core machine two BLAS threads measured 0.05-0.46 s per epoch against
a steady 0.054-0.08 s for one thread.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_softmax.config import SGDConfig
from mnist_softmax.model.fit_step import FitStep
from mnist_softmax.model.outputs import fused_block_pass
from mnist_softmax.model.sgd_stack import SGDStack

OnEpoch = Callable[[FitStep], bool]


def learning_rate(cfg: SGDConfig, t: float) -> float:
    """Return the learning rate after ``t`` epochs of training (``t`` may be fractional).

    Linear warm-up from 0 to ``cfg.lr`` over ``cfg.warmup_epochs``, then ``constant``,
    ``step`` (times ``step_gamma`` every ``step_epochs``) or ``cosine`` (half a cosine from
    ``cfg.lr`` down to 0 at ``cfg.epochs``; Loshchilov & Hutter 2017, without restarts).
    """
    warmup = cfg.warmup_epochs
    if t < warmup:
        return cfg.lr * t / warmup
    after = t - warmup
    if cfg.schedule == "step":
        return cfg.lr * cfg.step_gamma ** math.floor(after / cfg.step_epochs)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * after / (cfg.epochs - warmup)))
    return cfg.lr


def fit_sgd(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cfg: SGDConfig,
    l2: float,
    rng: np.random.Generator,
    on_epoch: OnEpoch,
    output: str = "softmax",
) -> None:
    """Fit softmax (or sparsemax) regression by minibatch SGD, reporting after every epoch.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), scaled, already shuffled, C-contiguous;
        its dtype (float32 or float64) is the dtype of the weights
    y : ndarray of shape (n_samples,), integer class indices
    n_classes : number of classes
    cfg : the optimizer config (epochs, batch size, lr, momentum, schedule)
    l2 : L2 penalty on W
    rng : permutes the batch order each epoch
    on_epoch : called with the epoch's :class:`FitStep` (its W and b are live views: copy
        them to keep them); returning True stops training (early stopping)
    output : the model's output kind, which picks the fused pass (and so the loss)
    """
    with threadpool_limits(limits=1, user_api="blas"):
        fit_sgd_stack(X, y, n_classes, [cfg], [l2], rng, [on_epoch], output)


def fit_sgd_stack(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cfgs: Sequence[SGDConfig],
    l2s: Sequence[float],
    rng: np.random.Generator,
    on_epoch: Sequence[OnEpoch],
    output: str,
) -> int:
    """Fit K configs side by side on the same batches; return the number of epochs run.

    Arguments as in :func:`fit_sgd`, one entry per config in ``cfgs``, ``l2s`` and
    ``on_epoch``; the configs share ``epochs`` and ``batch_size``, everything else (lr and
    its schedule, momentum, Nesterov, L2) is theirs. A config whose ``on_epoch`` returns
    True leaves the stack; the others go on. An exception from ``on_epoch`` ends them all.
    """
    opt = plain_config(cfgs[0])
    stack = SGDStack([plain_config(c) for c in cfgs], l2s, X.shape[1], n_classes, X.dtype)
    forward_backward = fused_block_pass(output)
    n_samples = len(y)
    starts = np.arange(0, n_samples, opt.batch_size)
    for epoch in range(opt.epochs):
        Z = np.empty((opt.batch_size, stack.W.shape[1]), stack.dtype)  # reused by every batch
        dW, tmp = np.empty_like(stack.W), np.empty_like(stack.W)
        nll_sum, n_correct = np.zeros(len(stack.live)), np.zeros(len(stack.live), np.int64)
        for j, i in enumerate(rng.permutation(len(starts))):
            batch = slice(starts[i], starts[i] + opt.batch_size)
            lr = stack.learning_rates(learning_rate, epoch + j / len(starts))
            step = forward_backward(stack.W, stack.b, X[batch], y[batch], stack.l2, n_classes,
                                    Z, dW)  # fmt: skip
            nll_sum += step.nll.astype(np.float64) * len(y[batch])
            n_correct += step.n_correct
            stack.apply_momentum(step.dW, step.db, lr, tmp)
        staying = [
            pos
            for pos, k in enumerate(stack.live)
            if not on_epoch[k](
                FitStep(
                    epoch=epoch + 1,
                    W=stack.W[:, stack.block(pos)],
                    b=stack.b[stack.block(pos)],
                    train_nll=float(nll_sum[pos] / n_samples),
                    train_acc=float(n_correct[pos] / n_samples),
                    lr=learning_rate(stack.cfgs[k], epoch),
                )
            )
        ]
        if not staying:
            return epoch + 1
        if len(staying) < len(stack.live):
            stack.keep(staying)
    return opt.epochs


def plain_config(cfg: SGDConfig) -> SGDConfig:
    """Return ``cfg`` as a plain :class:`SGDConfig`, every field read once.

    A stage hands its optimizer config over as a checked view (:mod:`mnist_softmax.scoped_config`)
    whose attribute reads cost microseconds each; the schedule reads four of them per batch,
    which made 0.02 s of a 0.09 s epoch.
    """
    return SGDConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(SGDConfig)})
