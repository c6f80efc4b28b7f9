"""Train a softmax regression model: scale, shuffle, optimize, watch the validation split.

The validation split alone decides the kept epoch (lowest validation loss: the NLL, or for
``model.output=sparsemax`` the sparsemax loss, since its NLL is often infinite) and early
stopping; this module never sees the test split. NaN or inf in the loss or weights stops
training with a :class:`TrainingDivergedError` before anything is written.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mnist_softmax.config import Config, LBFGSConfig, SGDConfig
from mnist_softmax.data.scaler import Scaler
from mnist_softmax.data.splits import Split
from mnist_softmax.errors import TrainingDivergedError
from mnist_softmax.model.curves import curve_columns
from mnist_softmax.model.fit_step import FitStep
from mnist_softmax.model.model_file import SoftmaxModel
from mnist_softmax.model.numerics import accuracy, predict_logits
from mnist_softmax.model.outputs import LOSS_NAMES, output_loss
from mnist_softmax.model.sgd import fit_sgd

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

log = logging.getLogger(__name__)

# every key train() reads: what the model file depends on (and what its config_hash covers)
TRAIN_PARAMS = ("seed", "model", "optimizer", "data.class_names", "data.image_shape")


@dataclass(frozen=True)
class TrainResult:
    """What training produces: the kept model, one curve row per epoch, the train.json dict."""

    model: SoftmaxModel
    history: pd.DataFrame
    summary: dict[str, Any]


def train(train: Split, val: Split, scaler: Scaler, cfg: Config) -> TrainResult:
    """Fit the model configured by ``cfg`` on ``train``, selecting the epoch on ``val``.

    Parameters
    ----------
    train, val : raw uint8 pixels X of shape (n_samples, n_features) and labels y
    scaler : the scaler fitted on the training split (stored in the model)
    cfg : seed, model (dtype, l2) and optimizer (sgd | lbfgs) settings
    """
    started = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    n_classes = len(cfg.data.class_names)
    X, y, X_val = shuffled_features(train, val, scaler, cfg.model.dtype, rng)
    opt = cfg.optimizer
    max_epochs = opt.epochs if isinstance(opt, SGDConfig) else opt.max_iter
    output = cfg.model.output
    monitor = EpochMonitor(X_val, val.y, getattr(opt, "patience", 0), max_epochs, opt, output)
    fit_started = time.perf_counter()
    # Overflow is reported once, as TrainingDivergedError by the monitor, not as warnings.
    solver: dict[str, Any] = {}
    with np.errstate(over="ignore", invalid="ignore"):
        if isinstance(opt, SGDConfig):
            fit_sgd(X, y, n_classes, opt, cfg.model.l2, rng, monitor, output)
        else:  # imported here: the SGD path need not pay for scipy.optimize
            from mnist_softmax.model.lbfgs import fit_lbfgs

            fitted = fit_lbfgs(X, y, n_classes, opt, cfg.model.l2, monitor, output)
            solver = _lbfgs_outcome(fitted, opt)
    fit_seconds = time.perf_counter() - fit_started
    if monitor.best is None:
        raise TrainingDivergedError(
            f"{opt.name} stopped before its first epoch/iteration: check optimizer.tol"
        )
    seconds = {
        "train_seconds": round(time.perf_counter() - started, 4),
        "seconds_per_epoch": round(fit_seconds / len(monitor.rows), 4),
    }
    best = monitor.best
    train_logits = predict_logits(X, best.W, best.b)
    return training_result(monitor, train_logits, y, scaler, cfg, {**seconds, **solver})


def shuffled_features(
    train: Split, val: Split, scaler: Scaler, dtype: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the shuffled, scaled training features and labels, and the scaled validation X.

    Shuffle ONCE (gathering uint8 is 4x cheaper than float32), then scale into one contiguous
    array: SGD slices batches from it without any further copies. Draws from ``rng`` first,
    before the optimizer does: the same seed gives the same order in every trainer.
    """
    order = rng.permutation(len(train))
    X, y = scaler.transform(train.X[order], dtype), train.y[order]
    return X, y, scaler.transform(val.X, dtype)


def training_result(
    monitor: EpochMonitor,
    train_logits: np.ndarray,
    y: np.ndarray,
    scaler: Scaler,
    cfg: Config,
    extra: dict[str, Any],
) -> TrainResult:
    """Build the :class:`TrainResult` of the kept epoch from a finished monitor.

    train_logits : ndarray of shape (n_samples, n_classes), the kept model on the training
    split; extra : the trainer's summary entries: ``train_seconds``, ``seconds_per_epoch``
    and, for L-BFGS, the solver's outcome
    """
    best = monitor.best
    assert best is not None  # the caller checked: at least one epoch was reported
    output, loss_name = cfg.model.output, LOSS_NAMES[cfg.model.output]
    history = pd.DataFrame(monitor.rows, columns=list(curve_columns(loss_name)))
    model = SoftmaxModel(
        W=best.W,
        b=best.b,
        class_names=np.asarray(cfg.data.class_names, dtype=str),
        scaler=scaler,
        image_shape=np.asarray(cfg.data.image_shape, dtype=np.int64),
        config_hash=cfg.hash(*TRAIN_PARAMS),
        output=output,
    )
    best_row = history[history["epoch"] == best.epoch].iloc[0]
    summary = {
        "best_epoch": best.epoch,
        "epochs_run": len(history),
        "optimizer": cfg.optimizer.name,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "train": {
            "acc": accuracy(train_logits, y),
            loss_name: output_loss(train_logits, y, output),
        },
        "val": {"acc": float(best_row["val/acc"]), loss_name: float(best_row[f"val/{loss_name}"])},
        **extra,
    }
    log.info(
        "kept epoch %d of %d: val/acc=%.4f val/%s=%.4f (%.2f s)",
        best.epoch, len(history), summary["val"]["acc"], loss_name, summary["val"][loss_name],
        summary["train_seconds"],
    )  # fmt: skip
    return TrainResult(model=model, history=history, summary=summary)


def _lbfgs_outcome(result: OptimizeResult, opt: LBFGSConfig) -> dict[str, Any]:
    """Return whether L-BFGS met ``optimizer.tol``, and scipy's reason; warn when it did not.

    Early stopping on the validation split (``callback`` raising StopIteration) is a choice,
    not a failure: it is reported as such and not warned about.
    """
    stopped_early = "StopIteration" in str(result.message)
    converged = bool(result.success)
    if not converged and not stopped_early:
        log.warning(
            "WARNING: L-BFGS did not converge in %d iterations (%s): raise optimizer.max_iter "
            "(now %d) or loosen optimizer.tol (now %g); flagged as converged=false in train.json",
            result.nit, result.message, opt.max_iter, opt.tol,
        )  # fmt: skip
    return {"converged": converged, "solver_message": str(result.message)}


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MiB (ru_maxrss: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class EpochMonitor:
    """Per-epoch callback: validation metrics, divergence check, best epoch, early stopping.

    "nll" in its names is the output's loss: the NLL for softmax, else the sparsemax loss.
    """

    def __init__(
        self,
        X_val: np.ndarray,
        y_val: np.ndarray,
        patience: int,
        max_epochs: int,
        opt: Any,
        output: str = "softmax",
    ) -> None:
        self.X_val, self.y_val, self.output = X_val, y_val, output
        self.loss_name = LOSS_NAMES[output]
        self.patience, self.max_epochs, self.opt = patience, max_epochs, opt
        self.rows: list[tuple[float, ...]] = []
        self.best: FitStep | None = None
        self.best_nll = np.inf
        self.since_best = 0
        self.tick = time.perf_counter()

    def __call__(self, step: FitStep) -> bool:
        self._check_finite(step)
        val_logits = predict_logits(self.X_val, step.W, step.b)
        val_nll = output_loss(val_logits, self.y_val, self.output)
        val_acc = accuracy(val_logits, self.y_val)
        now = time.perf_counter()
        seconds, self.tick = now - self.tick, now
        self.rows.append(
            (step.epoch, step.train_nll, step.train_acc, val_nll, val_acc, step.lr, seconds)
        )
        log.info(
            "epoch %d/%d train/%s=%.4f train/acc=%.4f val/%s=%.4f val/acc=%.4f lr=%s %.3f s",
            step.epoch, self.max_epochs, self.loss_name, step.train_nll, step.train_acc,
            self.loss_name, val_nll, val_acc,
            "-" if np.isnan(step.lr) else f"{step.lr:.4g}", seconds,
        )  # fmt: skip
        if val_nll < self.best_nll:
            self.best_nll, self.since_best = val_nll, 0
            self.best = replace(step, W=step.W.copy(), b=step.b.copy())
        else:
            self.since_best += 1
        return self.patience > 0 and self.since_best >= self.patience

    def _check_finite(self, step: FitStep) -> None:
        if np.isfinite(step.train_nll) and np.isfinite(step.W).all() and np.isfinite(step.b).all():
            return
        if isinstance(self.opt, SGDConfig):
            hint = (
                f"lower optimizer.lr (now {self.opt.lr:g}) or optimizer.momentum "
                f"(now {self.opt.momentum:g}), or add optimizer.warmup_epochs"
            )
        else:
            hint = "check data.scaling or raise model.l2"
        raise TrainingDivergedError(
            f"training diverged at epoch {step.epoch} "
            f"(train/{self.loss_name}={step.train_nll}): {hint}"
        )
