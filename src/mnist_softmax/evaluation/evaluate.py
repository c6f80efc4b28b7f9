"""Test-split evaluation before and after calibration: the numbers and tables evaluate writes.

scikit-learn computes what it has (``brier_score_loss``, ``confusion_matrix``,
``precision_recall_fscore_support``); the binned calibration errors and their bootstrap
interval come from :mod:`mnist_softmax.evaluation.reliability`. The NLL is computed from the
logits (:func:`mnist_softmax.model.numerics.nll`), not with ``sklearn.metrics.log_loss``:
log_loss clips probabilities at the float eps, capping each image's loss at ~36 nats, while
one outlier image can cost 1000+ nats; the clipped number would disagree with the validation
NLL that the temperature minimizes (the tests check both agree when nothing saturates).
The Brier score is :func:`mnist_softmax.evaluation.reliability.brier_score` (scikit-learn's
``brier_score_loss`` on the probability matrix, unhalved multiclass form).

A sparsemax model's probabilities hold exact zeros, so its NLL is infinite as soon as one test
image gives its true class p = 0. The metrics file keeps finite numbers only ("NLL where it is
finite"), and always says how sparse the output is: the share of images whose true class gets
p = 0 (``true_zero``), the mean number of classes with p > 0 (``support``) and the share of
single-class predictions (``single``), for either output kind, next to the sparsemax loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mnist_softmax.atomic import atomic_open, write_json
from mnist_softmax.config import Config
from mnist_softmax.data.splits import Split
from mnist_softmax.errors import DataError
from mnist_softmax.evaluation.conformal import Conformal
from mnist_softmax.evaluation.conformal_report import coverage_metrics
from mnist_softmax.evaluation.reliability import (
    ReliabilityBins,
    brier_score,
    check_logits,
    ece_bootstrap_ci,
    reliability_bins,
)
from mnist_softmax.model.model_file import SoftmaxModel
from mnist_softmax.model.numerics import accuracy, nll, sparsemax_loss
from mnist_softmax.model.outputs import probabilities

MODELS = ("uncalibrated", "calibrated")


@dataclass(frozen=True)
class Scores:
    """Probabilistic scores of ``softmax(logits / T)`` (or sparsemax) on one labelled split.

    proba : ndarray of shape (n_samples, n_classes); bins : the confidence bins of the ECE;
    values : ``nll`` (``inf`` when a true class gets p = 0), ``brier``, ``ece``, ``mce``,
    ``sparsemax_loss``, ``true_zero``, ``support``, ``single``.
    """

    proba: np.ndarray
    bins: ReliabilityBins
    values: dict[str, float]


def score_logits(
    logits: np.ndarray,
    y: np.ndarray,
    temperature: float,
    n_bins: int,
    binning: str,
    output: str = "softmax",
) -> Scores:
    """Score ``output(logits / temperature)`` against ``y``: NLL, Brier, ECE, MCE, sparsity.

    The one definition of these metrics: evaluate reports them for T = 1 and the fitted T, and
    the retrain job scores the champion and the challenger with it, so their numbers agree.
    ``output`` is the model's kind (``softmax`` or ``sparsemax``); the sparsemax loss of
    ``logits / T`` and the sparsity measures are reported for both kinds, so they compare.

    logits : ndarray of shape (n_samples, n_classes), float64; y : ndarray of shape (n_samples,)
    """
    proba = probabilities(logits, output, temperature)
    bins = reliability_bins(proba, y, n_bins, binning)
    p_true = np.take_along_axis(proba, np.asarray(y)[:, None], axis=1)[:, 0]
    support = np.count_nonzero(proba > 0, axis=1)
    values = {
        "nll": _nll(logits, y, temperature, output, p_true),
        "brier": brier_score(proba, y),
        "ece": bins.ece,
        "mce": bins.mce,
        "sparsemax_loss": sparsemax_loss(logits, y, temperature),
        "true_zero": float(np.mean(p_true == 0)),
        "support": float(np.mean(support)),
        "single": float(np.mean(support == 1)),
    }
    return Scores(proba=proba, bins=bins, values=values)


def _nll(
    logits: np.ndarray, y: np.ndarray, temperature: float, output: str, p_true: np.ndarray
) -> float:
    """Return the NLL of the output's probabilities: from the logits for softmax (exact even
    where p underflows to 0), from ``p`` itself otherwise (``inf`` once a true p is 0)."""
    if output == "softmax":
        return nll(logits, y, temperature)
    with np.errstate(divide="ignore"):
        return float(-np.mean(np.log(p_true)))


@dataclass(frozen=True)
class Evaluation:
    """Everything the evaluate stage writes or plots, for one test split.

    proba, proba_calibrated : ndarray of shape (n_samples, n_classes)
    y : ndarray of shape (n_samples,); confusion : ndarray of shape (n_classes, n_classes),
    rows actual, columns predicted; bins : reliability bins keyed by ``MODELS``.
    """

    temperature: float
    class_names: tuple[str, ...]
    y: np.ndarray
    proba: np.ndarray
    proba_calibrated: np.ndarray
    confusion: np.ndarray
    bins: dict[str, ReliabilityBins]
    metrics: dict[str, Any]

    def reliability_table(self) -> pd.DataFrame:
        """Return the non-empty bins: columns model, bin, confidence, accuracy, count."""
        frames = []
        for name in MODELS:
            b = self.bins[name]
            filled = np.flatnonzero(b.count > 0)
            frames.append(
                pd.DataFrame(
                    {
                        "model": name,
                        "bin": filled,
                        "confidence": b.confidence[filled],
                        "accuracy": b.accuracy[filled],
                        "count": b.count[filled],
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def confusion_table(self) -> pd.DataFrame:
        """Return one row per test image: columns actual, predicted (class names)."""
        names = np.asarray(self.class_names)
        return pd.DataFrame(
            {"actual": names[self.y], "predicted": names[self.proba.argmax(axis=1)]}
        )

    def write(
        self,
        metrics_path: str | Path,
        per_class_path: str | Path,
        reliability_paths: Mapping[str, str | Path],
        confusion_path: str | Path,
    ) -> None:
        """Write the metrics JSONs and the DVC plots CSVs (atomically).

        ``metrics`` holds finite numbers only (see :func:`evaluate`), so the JSON is strict.
        The per-class scores go to their own file: declared as DVC metrics they made 40 of the
        columns of ``dvc exp show``. One reliability CSV per model (keyed by ``MODELS``), since
        DVC plots draw one series per file and cannot split one file by a ``model`` column.
        """
        write_json(metrics_path, {k: v for k, v in self.metrics.items() if k != "per_class"})
        write_json(per_class_path, {"per_class": self.metrics["per_class"]})
        table = self.reliability_table()
        tables = [(table[table.model == m].drop(columns="model"), reliability_paths[m])
                  for m in MODELS]  # fmt: skip
        for frame, path in (*tables, (self.confusion_table(), confusion_path)):
            with atomic_open(path) as handle:
                frame.to_csv(handle, index=False)


def confusion_counts(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Return the confusion matrix of shape (n_classes, n_classes): rows actual, columns predicted.

    scikit-learn's ``confusion_matrix`` as one ``bincount``; the tests check both agree.
    """
    flat = np.asarray(y, np.int64) * n_classes + np.asarray(pred, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_scores(
    confusion: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return precision, recall, F1 and support per class from a confusion matrix.

    The formulas of scikit-learn's ``precision_recall_fscore_support`` with
    ``zero_division=0`` (``f1 = 2 tp / (2 tp + fp + fn)``), bit for bit (tested), without
    importing scikit-learn in the evaluate and log stages. Each of shape (n_classes,).
    """
    tp = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    return (
        _divide(tp, predicted),
        _divide(tp, actual),
        _divide(2.0 * tp, actual + predicted),
        actual,
    )


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Return ``numerator / denominator`` as float64, 0 where the denominator is 0."""
    safe = np.where(denominator == 0, 1, denominator).astype(np.float64)
    return np.where(denominator == 0, 0.0, np.asarray(numerator, np.float64) / safe)


def evaluate(
    logits: np.ndarray,
    y: np.ndarray,
    temperature: float,
    class_names: list[str] | tuple[str, ...],
    rng: np.random.Generator,
    *,
    n_bins: int,
    binning: str,
    bootstrap_samples: int,
    ci_level: float,
    output: str,
) -> Evaluation:
    """Measure test logits before and after dividing them by ``temperature``.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes)
        Uncalibrated test logits.
    y : ndarray of shape (n_samples,)
        True class indices.
    temperature : float
        Fitted by the calibrate stage (1.0 for ``calibration=none``).
    class_names : sequence of str, length n_classes
    rng : numpy.random.Generator
        Drives the bootstrap resamples of the ECE interval.
    n_bins, binning, bootstrap_samples, ci_level
        As in ``cfg.evaluation``.
    output : {"softmax", "sparsemax"}
        The model's output kind (recorded in the model file).

    Returns
    -------
    Evaluation
        ``metrics`` has the ``reports/metrics.json`` layout; a value that is not finite (the
        NLL of a sparsemax model that gives a true class p = 0) is left out.
    """
    z = check_logits(logits, y, "test")
    if len(y) == 0:
        raise DataError("the test split is empty: nothing to evaluate")
    test: dict[str, float] = {"acc": accuracy(z, y)}
    probas, bins = {}, {}
    for name, t in zip(MODELS, (1.0, temperature), strict=True):
        suffix = "" if name == "uncalibrated" else "_calibrated"
        scores = score_logits(z, y, t, n_bins, binning, output)
        p = probas[name] = scores.proba
        b = bins[name] = scores.bins
        finite = {key: value for key, value in scores.values.items() if math.isfinite(value)}
        test |= {f"{key}{suffix}": value for key, value in finite.items()}
        interval = ece_bootstrap_ci(p, y, b.edges, bootstrap_samples, ci_level, rng)
        if interval is not None:  # bootstrap_samples=0 turns the interval off
            test[f"ece{suffix}_ci_low"], test[f"ece{suffix}_ci_high"] = interval
    pred = z.argmax(axis=1)
    confusion = confusion_counts(y, pred, z.shape[1])
    per_class = {
        str(name): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, *per_class_scores(confusion), strict=True)
    }
    return Evaluation(
        temperature=float(temperature),
        class_names=tuple(str(c) for c in class_names),
        y=np.asarray(y),
        proba=probas["uncalibrated"],
        proba_calibrated=probas["calibrated"],
        confusion=confusion,
        bins=bins,
        metrics={"temperature": float(temperature), "test": test, "per_class": per_class},
    )


def evaluate_model(
    model: SoftmaxModel, test: Split, temperature: float, conformal: Conformal, cfg: Config
) -> Evaluation:
    """The evaluate stage's work in one entry (the stage and the fast sweep call it).

    Scores the model at ``temperature`` on the test split, with its prediction sets' coverage
    under ``metrics["conformal"]``; reads ``seed`` (the bootstrap's generator) and
    ``evaluation.*`` from ``cfg``.
    """
    ev = cfg.evaluation
    result = evaluate(
        model.logits(test.X), test.y, temperature, [str(c) for c in model.class_names],
        np.random.default_rng(cfg.seed), n_bins=ev.n_bins, binning=ev.binning,
        bootstrap_samples=ev.bootstrap_samples, ci_level=ev.ci_level, output=model.output,
    )  # fmt: skip
    result.metrics["conformal"] = coverage_metrics(conformal.sets(result.proba_calibrated), test.y)
    return result
