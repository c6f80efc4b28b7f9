"""Train K SGD configs at once: their weights side by side, one pass over the data for all.

A sweep over ``optimizer.lr`` x ``model.l2`` trains models that see the same batches in the same
order (same seed, batch size and epochs). Stacking their weights as ``W = [W_1 | ... | W_K]``,
shape (n_features, K * n_classes), turns K thin matrix products per batch into one wide one,
which BLAS runs far closer to its peak, and reads each batch of X from memory once. Each
config keeps its own learning rate (schedule included), momentum, Nesterov flag and L2, applied
element-wise per block of columns, its own validation monitor (best epoch, early stopping,
divergence) and its own result. Block ``k`` follows the arithmetic of a single run of config
``k`` (:func:`mnist_softmax.model.training.train`) step for step; the tests check the weights
agree to float tolerance (BLAS may sum a wide product in another order than a thin one).

A config that diverges or stops early leaves the stack at the end of that epoch; the others go on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_softmax.config import Config, SGDConfig, select_keys
from mnist_softmax.data.scaler import Scaler
from mnist_softmax.data.splits import Split
from mnist_softmax.errors import ConfigError, TrainingDivergedError
from mnist_softmax.model.fit_step import FitStep
from mnist_softmax.model.numerics import forward_backward_blocks, predict_logits
from mnist_softmax.model.sgd import learning_rate
from mnist_softmax.model.training import (
    EpochMonitor,
    TrainResult,
    shuffled_features,
    training_result,
)

log = logging.getLogger(__name__)

# what the configs of one stack share: the data they see, in which order, for how long, and the
# shape and dtype of their weights; everything else in model.* and optimizer.* may differ
STACK_KEYS = (
    "seed",
    "model.dtype",
    "optimizer.name",
    "optimizer.epochs",
    "optimizer.batch_size",
    "data.class_names",
    "data.image_shape",
)

Outcome = TrainResult | TrainingDivergedError


def stack_key(cfg: Config) -> str:
    """Return the values of ``STACK_KEYS`` as text: configs with equal keys can share a stack."""
    return json.dumps(select_keys(cfg.to_dict(), list(STACK_KEYS)), sort_keys=True)


def train_stacked(
    train: Split, val: Split, scaler: Scaler, cfgs: Sequence[Config], threads: int = 1
) -> list[Outcome]:
    """Fit every SGD config of ``cfgs`` in one pass over the data; return one outcome each.

    Parameters
    ----------
    train, val : raw uint8 pixels X of shape (n_samples, n_features) and labels y
    scaler : the scaler fitted on the training split (stored in each model)
    cfgs : configs with equal :func:`stack_key` (a :class:`ConfigError` otherwise)
    threads : BLAS threads for the wide products (1 keeps a shared machine usable)

    Returns
    -------
    list of TrainResult or TrainingDivergedError, in the order of ``cfgs``
        What :func:`~mnist_softmax.model.training.train` returns for that config, or the error
        it raises. Timings in each summary are the stack's, divided by K.
    """
    _check_stackable(cfgs)
    started = time.perf_counter()
    first = cfgs[0]
    rng = np.random.default_rng(first.seed)
    X, y, X_val = shuffled_features(train, val, scaler, first.model.dtype, rng)
    monitors = [
        EpochMonitor(X_val, val.y, c.optimizer.patience, c.optimizer.epochs, c.optimizer)
        for c in cfgs
    ]
    errors: dict[int, TrainingDivergedError] = {}
    fit_started = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"), threadpool_limits(threads, "blas"):
        epochs = _run_epochs(X, y, cfgs, rng, monitors, errors)
        kept = [k for k in range(len(cfgs)) if k not in errors]
        train_logits = _stacked_logits(X, [monitors[k] for k in kept])
    fit_seconds = time.perf_counter() - fit_started
    n_classes = len(first.data.class_names)
    extra = {
        "train_seconds": round((time.perf_counter() - started) / len(cfgs), 4),
        "seconds_per_epoch": round(fit_seconds / max(epochs, 1) / len(cfgs), 4),
        "stacked_configs": len(cfgs),
    }
    outcomes: dict[int, Outcome] = dict(errors)
    for pos, k in enumerate(kept):
        logits = train_logits[:, pos * n_classes : (pos + 1) * n_classes]
        outcomes[k] = training_result(monitors[k], logits, y, scaler, cfgs[k], dict(extra))
    log.info(
        "%d configs in %.2f s (%d diverged)", len(cfgs), time.perf_counter() - started, len(errors)
    )
    return [outcomes[k] for k in range(len(cfgs))]


def _check_stackable(cfgs: Sequence[Config]) -> None:
    if not cfgs:
        raise ConfigError("no config to train")
    for cfg in cfgs:
        if not isinstance(cfg.optimizer, SGDConfig):
            raise ConfigError(
                f"optimizer.name={cfg.optimizer.name!r} cannot be stacked (allowed: sgd)"
            )
        if cfg.model.output != "softmax":  # the stacked pass is the softmax one
            raise ConfigError(
                f"model.output={cfg.model.output!r} cannot be stacked (allowed: softmax): "
                "train it on its own (`mnist-softmax sweep --queue`, `dvc exp run`)"
            )
    keys = {stack_key(cfg) for cfg in cfgs}
    if len(keys) > 1:
        raise ConfigError(
            f"configs differ in {', '.join(STACK_KEYS)}: train each group in its own stack"
        )


class _Stack:
    """The live configs' weights, velocities and per-column hyperparameters, side by side.

    W, vW : ndarray of shape (n_features, L * n_classes); b, vb : ndarray of shape (L * C,)
    for the L configs still training (``live`` holds their indices into the configs).
    """

    def __init__(self, cfgs: Sequence[Config], n_features: int, n_classes: int) -> None:
        dtype = np.dtype(cfgs[0].model.dtype)
        self.cfgs, self.n_classes, self.dtype = cfgs, n_classes, dtype
        self.live = list(range(len(cfgs)))
        opts = [c.optimizer for c in cfgs]
        width = len(cfgs) * n_classes
        self.W = np.zeros((n_features, width), dtype)
        self.b = np.zeros(width, dtype)
        self.vW, self.vb = np.zeros_like(self.W), np.zeros_like(self.b)
        # Nesterov: p -= lr (g + mu v); plain: p -= lr v. Both are p -= lr (a g + c v).
        self.l2 = self._columns([c.model.l2 for c in cfgs])
        self.mu = self._columns([o.momentum for o in opts])
        self.a = self._columns([1.0 if o.nesterov else 0.0 for o in opts])
        self.c = self._columns([o.momentum if o.nesterov else 1.0 for o in opts])

    def _columns(self, values: Sequence[float]) -> np.ndarray:
        return np.repeat(np.asarray(values, dtype=self.dtype), self.n_classes)

    def block(self, pos: int) -> slice:
        return slice(pos * self.n_classes, (pos + 1) * self.n_classes)

    def learning_rates(self, t: float) -> np.ndarray:
        """Return each live config's learning rate after ``t`` epochs, per column."""
        return self._columns([learning_rate(self.cfgs[k].optimizer, t) for k in self.live])

    def keep(self, positions: list[int]) -> None:
        """Keep only the live configs at ``positions``; drop the others' columns."""
        cols = np.concatenate([np.arange(len(self.b))[self.block(p)] for p in positions])
        for name in ("W", "vW"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[:, cols]))
        for name in ("b", "vb", "l2", "mu", "a", "c"):
            setattr(self, name, getattr(self, name)[cols])
        self.live = [self.live[p] for p in positions]


def _run_epochs(
    X: np.ndarray,
    y: np.ndarray,
    cfgs: Sequence[Config],
    rng: np.random.Generator,
    monitors: list[EpochMonitor],
    errors: dict[int, TrainingDivergedError],
) -> int:
    """Run the shared epochs (the loop of :func:`mnist_softmax.model.sgd.fit_sgd`, K-wide).

    Fills ``errors`` with the configs that diverged; returns the number of epochs run.
    """
    opt = cfgs[0].optimizer
    n_samples, n_features = X.shape
    stack = _Stack(cfgs, n_features, len(cfgs[0].data.class_names))
    starts = np.arange(0, n_samples, opt.batch_size)
    for epoch in range(opt.epochs):
        width = stack.W.shape[1]
        Z = np.empty((opt.batch_size, width), stack.dtype)  # scratch, reused by every batch
        dW, tmp = np.empty_like(stack.W), np.empty_like(stack.W)
        nll_sum, n_correct = np.zeros(len(stack.live)), np.zeros(len(stack.live), np.int64)
        for j, i in enumerate(rng.permutation(len(starts))):
            batch = slice(starts[i], starts[i] + opt.batch_size)
            lr = stack.learning_rates(epoch + j / len(starts))
            step = forward_backward_blocks(
                stack.W, stack.b, X[batch], y[batch], stack.l2, stack.n_classes, Z, dW
            )
            nll_sum += step.nll.astype(np.float64) * len(y[batch])
            n_correct += step.n_correct
            _apply_momentum(stack.W, stack.vW, step.dW, lr, stack.mu, stack.a, stack.c, tmp)
            _apply_momentum(stack.b, stack.vb, step.db, lr, stack.mu, stack.a, stack.c, None)
        staying = _report_epoch(stack, epoch, nll_sum / n_samples, n_correct / n_samples,
                                monitors, errors)  # fmt: skip
        if len(staying) < len(stack.live):
            stack.keep(staying)
        if not stack.live:
            return epoch + 1
    return opt.epochs


def _report_epoch(
    stack: _Stack,
    epoch: int,
    train_nll: np.ndarray,
    train_acc: np.ndarray,
    monitors: list[EpochMonitor],
    errors: dict[int, TrainingDivergedError],
) -> list[int]:
    """Hand each live config's epoch to its monitor; return the positions that keep training."""
    staying = []
    for pos, k in enumerate(stack.live):
        cols = stack.block(pos)
        step = FitStep(
            epoch=epoch + 1,
            W=stack.W[:, cols],
            b=stack.b[cols],
            train_nll=float(train_nll[pos]),
            train_acc=float(train_acc[pos]),
            lr=learning_rate(stack.cfgs[k].optimizer, epoch),
        )
        try:
            if not monitors[k](step):
                staying.append(pos)
        except TrainingDivergedError as exc:
            errors[k] = exc
            log.warning("config %d: %s", k, exc)
    return staying


def _apply_momentum(
    p: np.ndarray,
    v: np.ndarray,
    g: np.ndarray,
    lr: np.ndarray,
    mu: np.ndarray,
    a: np.ndarray,
    c: np.ndarray,
    tmp: np.ndarray | None,
) -> None:
    """Update ``p`` and ``v`` in place as :func:`mnist_softmax.model.sgd._apply_momentum` does.

    v <- mu v + g;  p <- p - lr (a g + c v), per column: (a, c) = (1, mu) is Nesterov, (0, 1)
    plain momentum; both reproduce the single run's float operations exactly. ``tmp`` (shape
    of ``p``, or None to allocate) is scratch.
    """
    v *= mu
    v += g
    g *= a
    g += np.multiply(c, v, out=tmp)
    p -= np.multiply(lr, g, out=tmp)


def _stacked_logits(X: np.ndarray, monitors: list[EpochMonitor]) -> np.ndarray:
    """Return the kept epochs' training logits, one block per monitor, in one product.

    Returns ndarray of shape (n_samples, len(monitors) * n_classes). Every monitor has a best
    epoch: a config whose first epoch diverged is among the errors, not here.
    """
    bests = [m.best for m in monitors if m.best is not None]
    if not bests:
        return np.empty((len(X), 0), X.dtype)
    W, b = np.hstack([s.W for s in bests]), np.concatenate([s.b for s in bests])
    return predict_logits(X, W, b)
