"""A model's scores on a split other than evaluate's test set: batches' slices, retrain's checks.

The MNIST test split says whether the model got better at MNIST; the held-out slices of the
accepted batches say whether it reads the new data, which is why the batches were sent. Both
the evaluate stage (``reports/batches.json``) and the retrain job (champion against challenger,
through their served pyfuncs) score with :func:`calibrated_scores`, on ``score_logits``: the
same definitions as ``reports/metrics.json``.
"""

from __future__ import annotations

import math

import numpy as np

from mnist_softmax.data.splits import Split
from mnist_softmax.evaluation.conformal import Conformal
from mnist_softmax.evaluation.conformal_report import coverage_metrics
from mnist_softmax.evaluation.evaluate import score_logits
from mnist_softmax.inbox.batch_store import AcceptedBatch
from mnist_softmax.model.model_file import SoftmaxModel
from mnist_softmax.model.numerics import accuracy
from mnist_softmax.model.outputs import probabilities

CALIBRATED = ("nll", "brier", "ece")  # score_logits values reported after temperature scaling
SCORE_NAMES = ("acc", *(f"{name}_calibrated" for name in CALIBRATED))
BATCH_SCORES = ("acc", "nll_calibrated", "brier_calibrated")  # per batch in reports/batches.json
SET_SCORES = ("coverage", "mean_set_size")  # of the prediction sets, per batch too


def calibrated_scores(
    model: SoftmaxModel, temperature: float, split: Split, n_bins: int, binning: str
) -> dict[str, float]:
    """Accuracy and calibrated NLL, Brier and ECE of ``model`` on ``split`` (``SCORE_NAMES``).

    Non-finite values are left out: a sparsemax model's NLL is infinite once a true class gets
    p = 0, and evaluate leaves it out of metrics.json the same way, so a retrain rule on it
    reads "missing: cannot compare" and keeps the champion (and JSON reports stay strict).
    """
    logits = model.logits(split.X).astype(np.float64)
    calibrated = score_logits(logits, split.y, temperature, n_bins, binning, model.output)
    scores = {"acc": accuracy(logits, split.y)}
    scores |= {f"{name}_calibrated": calibrated.values[name] for name in CALIBRATED}
    return {name: value for name, value in scores.items() if math.isfinite(value)}


def score_batches(
    model: SoftmaxModel,
    temperature: float,
    batches: list[AcceptedBatch],
    n_bins: int,
    binning: str,
    conformal: Conformal | None = None,
) -> dict[str, dict[str, float]]:
    """Images and ``BATCH_SCORES`` on each batch's held-out slice, by batch name.

    With ``conformal``, also the coverage and mean size of its prediction sets there
    (:func:`set_scores`).
    """
    report = {}
    for batch in batches:
        part = batch.held_out_part()
        scores = calibrated_scores(model, temperature, part, n_bins, binning)
        report[batch.name] = {"n": float(len(part))}
        report[batch.name] |= {name: scores[name] for name in BATCH_SCORES if name in scores}
        if conformal is not None:
            report[batch.name] |= set_scores(model, temperature, conformal, part)
    return report


def set_scores(
    model: SoftmaxModel, temperature: float, conformal: Conformal, split: Split
) -> dict[str, float]:
    """Coverage and mean size of the prediction sets on ``split`` (``SET_SCORES``).

    Coverage below ``1 - alpha`` on new images is a drift signal: the guarantee assumes they
    are exchangeable with the held-out validation images the threshold came from.
    """
    proba = probabilities(model.logits(split.X).astype(np.float64), model.output, temperature)
    metrics = coverage_metrics(conformal.sets(proba), split.y)
    return {name: metrics[name] for name in SET_SCORES}
