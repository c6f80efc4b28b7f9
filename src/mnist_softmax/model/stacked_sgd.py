"""Train K SGD configs at once (a sweep's stack) and turn each into what ``train`` returns.

A sweep over ``optimizer.lr`` x ``model.l2`` trains models that see the same batches in the same
order (same seed, batch size, epochs and output). Stacking their weights as
``W = [W_1 | ... | W_K]``, shape (n_features, K * n_classes), turns K thin matrix products per
batch into one wide one, which BLAS runs far closer to its peak, and reads each batch of X from
memory once. The SGD engine is the single run's (:func:`mnist_softmax.model.sgd.fit_sgd_stack`,
of which :func:`~mnist_softmax.model.sgd.fit_sgd` is K = 1); this module gives each config its
own validation monitor (best epoch, early stopping, divergence) and its own result. A stack of
one config equals :func:`mnist_softmax.model.training.train` bit for bit; in a wider stack BLAS
may sum a wide product in another order than a thin one, so the tests allow float tolerance.

A config that diverges or stops early leaves the stack at the end of that epoch; the others go on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_softmax.config import Config, SGDConfig, select_keys
from mnist_softmax.data.scaler import Scaler
from mnist_softmax.data.splits import Split
from mnist_softmax.errors import ConfigError, TrainingDivergedError
from mnist_softmax.model.fit_step import FitStep
from mnist_softmax.model.numerics import predict_logits
from mnist_softmax.model.sgd import fit_sgd_stack
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
    "model.output",
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
        EpochMonitor(X_val, val.y, c.optimizer.patience, c.optimizer.epochs, c.optimizer,
                     c.model.output)
        for c in cfgs
    ]  # fmt: skip
    errors: dict[int, TrainingDivergedError] = {}
    fit_started = time.perf_counter()
    watchers = [_watch(k, monitor, errors) for k, monitor in enumerate(monitors)]
    with np.errstate(over="ignore", invalid="ignore"), threadpool_limits(threads, "blas"):
        epochs = fit_sgd_stack(
            X, y, len(first.data.class_names), [c.optimizer for c in cfgs],
            [c.model.l2 for c in cfgs], rng, watchers, first.model.output,
        )  # fmt: skip
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
    keys = {stack_key(cfg) for cfg in cfgs}
    if len(keys) > 1:
        raise ConfigError(
            f"configs differ in {', '.join(STACK_KEYS)}: train each group in its own stack"
        )


def _watch(
    k: int, monitor: EpochMonitor, errors: dict[int, TrainingDivergedError]
) -> Callable[[FitStep], bool]:
    """Return config ``k``'s epoch callback: its monitor, a divergence ending that config only."""

    def on_epoch(step: FitStep) -> bool:
        try:
            return monitor(step)
        except TrainingDivergedError as exc:
            errors[k] = exc
            log.warning("config %d: %s", k, exc)
            return True

    return on_epoch


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
