"""The model on each accepted batch's held-out slice: how it does on the data that arrived.

The MNIST test split says whether the model got better at MNIST; these slices say whether it
reads the new data, which is why the batches were sent. Scored with ``score_logits``, the same
definitions as ``reports/metrics.json`` and the retrain job.
"""

from __future__ import annotations

import math

import numpy as np

from mnist_softmax.data.batch_store import AcceptedBatch
from mnist_softmax.data.splits import Split
from mnist_softmax.evaluation.evaluate import score_logits
from mnist_softmax.model.model_file import SoftmaxModel
from mnist_softmax.model.numerics import accuracy


def score_split(
    model: SoftmaxModel, temperature: float, split: Split, n_bins: int, binning: str
) -> dict[str, float]:
    """Images, accuracy and calibrated NLL/Brier of ``model`` on ``split`` (non-finite left out)."""
    logits = model.logits(split.X).astype(np.float64)
    calibrated = score_logits(logits, split.y, temperature, n_bins, binning, model.output)
    scores = {
        "n": float(len(split)),
        "acc": accuracy(logits, split.y),
        "nll_calibrated": calibrated.values["nll"],  # inf for sparsemax once a p(true) is 0
        "brier_calibrated": calibrated.values["brier"],
    }
    return {name: value for name, value in scores.items() if math.isfinite(value)}


def score_batches(
    model: SoftmaxModel,
    temperature: float,
    batches: list[AcceptedBatch],
    n_bins: int,
    binning: str,
) -> dict[str, dict[str, float]]:
    """``score_split`` on each batch's held-out slice, by batch name (empty with no batches)."""
    return {
        batch.name: score_split(model, temperature, batch.held_out_part(), n_bins, binning)
        for batch in batches
    }
