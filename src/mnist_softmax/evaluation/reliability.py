"""Calibration metrics of probabilities: confidence bins, ECE/MCE, their bootstrap interval, Brier.

Pure functions on arrays, shared by the calibrate and evaluate stages and the retrain job (the
softmax and the NLL live in :mod:`mnist_softmax.model.numerics`). ECE follows Guo et al. (2017):
bin the top-class confidence, then ``ECE = sum_b (n_b / n) |acc_b - conf_b|``, which
equals ``sum_b |sum_{i in b} (correct_i - conf_i)| / n``; that second form lets the bootstrap
resample with one weighted ``bincount`` instead of a Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_softmax.errors import DataError

BINNINGS = ("uniform", "quantile")
_BOOTSTRAP_CHUNK = 2_000_000  # resampled entries per chunk: bounds memory to ~50 MB


@dataclass(frozen=True)
class ReliabilityBins:
    """Top-class confidence bins: what a reliability diagram draws and what ECE/MCE sum.

    edges : ndarray of shape (n_bins + 1,), increasing; bin b is ``(edges[b], edges[b + 1]]``
    count : ndarray of shape (n_bins,), samples per bin
    confidence, accuracy : ndarray of shape (n_bins,), bin means (NaN where count is 0)
    """

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: count-weighted mean of ``|accuracy - confidence|``."""
        gap = np.nan_to_num(np.abs(self.accuracy - self.confidence))
        return float(np.sum(self.count * gap) / max(int(self.count.sum()), 1))

    @property
    def mce(self) -> float:
        """Maximum calibration error: the largest ``|accuracy - confidence|`` of a non-empty bin."""
        filled = self.count > 0
        if not filled.any():
            return 0.0
        return float(np.max(np.abs(self.accuracy[filled] - self.confidence[filled])))


def brier_score(proba: np.ndarray, y: np.ndarray) -> float:
    """Return the multiclass Brier score: the mean over rows of ``sum_k (p_k - onehot_k)^2``.

    The formula of scikit-learn's ``brier_score_loss`` on the probability matrix (>= 1.7, the
    unhalved multiclass form; the tests check both agree bit for bit), written out so the
    calibrate, evaluate and log stages do not import scikit-learn (~1 s) for one line.
    Finite for exact zeros, unlike the NLL, so it scores sparse outputs too.

    proba : ndarray of shape (n_samples, n_classes); y : ndarray of shape (n_samples,), int
    """
    proba = np.asarray(proba)
    proba = proba if np.issubdtype(proba.dtype, np.floating) else proba.astype(np.float64)
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(proba)), np.asarray(y)] = 1
    return float(np.mean(np.sum((onehot - proba) ** 2, axis=1)))


def check_logits(logits: np.ndarray, y: np.ndarray, split: str = "data") -> np.ndarray:
    """Return ``logits`` as float64 after checking they match ``y``; raise DataError otherwise.

    logits : ndarray of shape (n_samples, n_classes); y : ndarray of shape (n_samples,)
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    if z.ndim != 2 or y.ndim != 1 or len(z) != len(y):
        raise DataError(f"{split}: logits {z.shape} and labels {y.shape} do not match")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise DataError(f"{split}: labels outside [0, {z.shape[1]}) for {z.shape[1]} classes")
    if not np.isfinite(z).all():
        raise DataError(f"{split}: logits contain NaN or inf: the model is broken, retrain it")
    return z


def bin_edges(confidence: np.ndarray, *, n_bins: int, binning: str) -> np.ndarray:
    """Return confidence bin edges of shape (n_edges,), ``n_edges <= n_bins + 1``.

    ``uniform``: equal-width bins on [0, 1]. ``quantile``: equal-mass bins from the empirical
    quantiles of ``confidence``; duplicate edges (many confidences equal to 1.0) are merged.
    """
    if binning == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if binning == "quantile":
        if len(confidence) == 0:
            return np.array([0.0, 1.0])
        edges = np.unique(np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1)))
        return edges if len(edges) > 1 else np.array([0.0, edges[0]])
    raise ValueError(f"unknown binning {binning!r} (allowed: {BINNINGS})")


def assign_bins(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Return the bin index of each confidence, shape (n_samples,): bin b is (e_b, e_{b+1}]."""
    return np.searchsorted(edges[1:-1], confidence, side="left")


def reliability_bins(
    proba: np.ndarray, y: np.ndarray, n_bins: int = 15, binning: str = "uniform"
) -> ReliabilityBins:
    """Bin the top-class confidence of ``proba`` and measure accuracy per bin.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
        Predicted probabilities (rows sum to 1).
    y : ndarray of shape (n_samples,)
        True class indices.
    n_bins : int
        Number of bins (``quantile`` may merge a few).
    binning : {"uniform", "quantile"}
        Equal-width or equal-mass bins.
    """
    confidence, correct = _confidence_correct(proba, y)
    edges = bin_edges(confidence, n_bins=n_bins, binning=binning)
    idx = assign_bins(confidence, edges)
    k = len(edges) - 1
    count = np.bincount(idx, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf_mean = np.bincount(idx, weights=confidence, minlength=k) / count
        acc_mean = np.bincount(idx, weights=correct, minlength=k) / count
    return ReliabilityBins(edges=edges, count=count, confidence=conf_mean, accuracy=acc_mean)


def ece_bootstrap_ci(
    proba: np.ndarray,
    y: np.ndarray,
    edges: np.ndarray,
    n_samples: int,
    level: float,
    rng: np.random.Generator,
) -> tuple[float, float] | None:
    """Return a percentile bootstrap interval ``(low, high)`` of the ECE, or None.

    Resamples test images with replacement ``n_samples`` times, keeping the bin ``edges`` of the
    full sample (for quantile bins this measures sampling noise of ECE at fixed bins). Each
    resample's per-bin sums of ``correct - confidence`` come from one flat weighted bincount.
    Returns None when ``n_samples`` is 0 (interval turned off) or there is no data.

    proba : ndarray of shape (n_samples_data, n_classes); y : ndarray of shape (n_samples_data,)
    """
    n = len(y)
    if n_samples <= 0 or n == 0:
        return None
    confidence, correct = _confidence_correct(proba, y)
    gap = correct - confidence
    idx_bin = assign_bins(confidence, edges)
    k = len(edges) - 1
    chunk = max(1, _BOOTSTRAP_CHUNK // n)
    eces = []
    for start in range(0, n_samples, chunk):
        m = min(chunk, n_samples - start)
        draw = rng.integers(0, n, size=(m, n))
        flat = (idx_bin[draw] + k * np.arange(m)[:, None]).ravel()
        sums = np.bincount(flat, weights=gap[draw].ravel(), minlength=m * k).reshape(m, k)
        eces.append(np.abs(sums).sum(axis=1) / n)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(np.concatenate(eces), [alpha, 1.0 - alpha])
    return float(low), float(high)


def _confidence_correct(proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return top-class confidence and 0/1 correctness, both of shape (n_samples,)."""
    proba = np.asarray(proba, dtype=np.float64)
    return proba.max(axis=1), (proba.argmax(axis=1) == np.asarray(y)).astype(np.float64)
