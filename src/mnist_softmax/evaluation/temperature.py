"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).

One scalar ``T > 0`` divides every logit: ``softmax(z / T)``. The argmax, and so the accuracy,
cannot change; only the confidence does. ``T`` minimizes the validation NLL. That NLL is convex
in ``1 / T`` (a log-sum-exp of a linear function minus a linear term), hence unimodal in
``log T``, so a bounded Brent search over ``log T`` finds the global minimum inside the bounds.

A sparsemax model (``sparsemax(z / T)``) cannot use the NLL, which is infinite as soon as one
validation image gives its true class p = 0. Its T minimizes the validation Brier score
instead: a strictly proper scoring rule of the served probabilities themselves, finite with
exact zeros. (Its training loss, the sparsemax loss, is not a function of p alone: it also
charges how far below the threshold a zero-probability true class lies, and on MNIST the T it
picks, about 1.5, doubles the test ECE, while the Brier T, about 0.9, lowers it.) The Brier
score is not known to be unimodal in ``log T``, so its search starts with a grid over the
bounds and refines the best grid cell with the bounded Brent search.
A fit that lands on a bound, or that makes the validation NLL worse, is flagged and logged
loudly instead of being shipped silently.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_softmax.atomic import read_json
from mnist_softmax.errors import DataError
from mnist_softmax.evaluation.reliability import brier_score, check_logits, reliability_bins
from mnist_softmax.model.numerics import accuracy, nll
from mnist_softmax.model.outputs import check_output, probabilities

log = logging.getLogger(__name__)

METHODS = ("temperature", "none")
_XATOL = 1e-6  # tolerance of the search over log T (T to ~1e-6 relative)
_BOUND_TOL = 1e-3  # |log T - log bound| below this counts as "landed on the bound"
_NLL_TOL = 1e-9  # calibrated loss above the uncalibrated one by more than this is "worse"
CRITERIA = {"softmax": "nll", "sparsemax": "brier"}  # what T minimizes, by output kind
_LABELS = {"nll": "NLL", "brier": "Brier score"}  # for log lines
_GRID = 49  # log-spaced temperatures tried before refining a criterion not known to be unimodal


@dataclass(frozen=True)
class CalibrationResult:
    """A fitted temperature and the validation metrics before and after applying it.

    ``criterion`` names the minimized loss (``nll`` for softmax, ``brier`` for sparsemax);
    ``loss``/``ece`` are for ``p(z)``, ``loss_calibrated``/``ece_calibrated`` for
    ``p(z / temperature)``; ``acc`` is the same for both by construction.
    """

    method: str
    temperature: float
    at_bound: bool
    loss_worse: bool
    acc: float
    loss: float
    loss_calibrated: float
    ece: float
    ece_calibrated: float
    criterion: str = "nll"

    def to_params(self) -> dict[str, Any]:
        """Return the ``models/calibration.json`` content: ``{"method", "temperature"}``."""
        return {"method": self.method, "temperature": self.temperature}

    def to_metrics(self) -> dict[str, Any]:
        """Return the ``reports/calibration.json`` content (DVC metrics, names carry the split).

        The loss keys are named after the criterion: ``nll``, ``nll_calibrated``, ``nll_worse``
        for softmax, ``brier``, ``brier_calibrated``, ``brier_worse`` for sparsemax.
        """
        name = self.criterion
        val = {
            "acc": self.acc,
            name: self.loss,
            f"{name}_calibrated": self.loss_calibrated,
            "ece": self.ece,
            "ece_calibrated": self.ece_calibrated,
        }
        return {
            "temperature": self.temperature,
            "at_bound": self.at_bound,
            f"{name}_worse": self.loss_worse,
            "val": val,
        }


def fit_temperature(
    logits: np.ndarray, y: np.ndarray, *, t_min: float, t_max: float, output: str
) -> float:
    """Return the temperature in ``[t_min, t_max]`` minimizing the validation criterion.

    The NLL of ``softmax(z / T)``, or the Brier score of ``sparsemax(z / T)`` for
    ``output="sparsemax"`` (see the module docstring).

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes)
        Uncalibrated logits of the validation split.
    y : ndarray of shape (n_samples,)
        True class indices.
    t_min, t_max : float
        Search bounds, ``0 < t_min < t_max``.
    output : {"softmax", "sparsemax"}
        The model's output kind, which picks the criterion (:data:`CRITERIA`).

    Returns
    -------
    temperature : float
    """
    if not 0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
    z = check_logits(logits, y, "validation")
    _check_not_degenerate(y, z.shape[1])
    # Search over log T: scale-free steps, and T > 0 holds by construction.
    lo, hi = math.log(t_min), math.log(t_max)
    if CRITERIA[check_output(output)] != "nll":  # not known to be unimodal: bracket on a grid
        grid = np.linspace(lo, hi, _GRID)
        best = int(np.argmin([criterion(z, y, output, math.exp(g)) for g in grid]))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, _GRID - 1)]
    # imported here: evaluate, log and serving only read T (scipy.optimize costs ~0.2-0.4 s)
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda log_t: criterion(z, y, output, math.exp(log_t)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": _XATOL},
    )
    return float(min(max(math.exp(result.x), t_min), t_max))


def criterion(z: np.ndarray, y: np.ndarray, output: str, temperature: float = 1.0) -> float:
    """Return the calibration criterion of ``output`` (:data:`CRITERIA`) at ``temperature``.

    z : ndarray of shape (n_samples, n_classes), float64; y : ndarray of shape (n_samples,)
    """
    if CRITERIA[check_output(output)] == "nll":
        return nll(z, y, temperature)
    return brier_score(probabilities(z, output, temperature), y)


def calibrate(
    logits: np.ndarray,
    y: np.ndarray,
    *,
    method: str,
    t_min: float,
    t_max: float,
    n_bins: int,
    binning: str,
    output: str,
) -> CalibrationResult:
    """Fit the calibration ``method`` on validation logits and measure it.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes)
        Uncalibrated validation logits.
    y : ndarray of shape (n_samples,)
        True class indices.
    method : {"temperature", "none"}
        ``"none"`` keeps ``T = 1`` (a valid choice: the metrics are still reported).
    t_min, t_max : float
        Bounds of the temperature search.
    n_bins, binning : int, {"uniform", "quantile"}
        Confidence bins of the ECE.
    output : {"softmax", "sparsemax"}
        The model's output kind: the probabilities and the criterion T minimizes.

    Returns
    -------
    CalibrationResult
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r} (allowed: {METHODS})")
    z = check_logits(logits, y, "validation")
    _check_not_degenerate(y, z.shape[1])
    fitted = method == "temperature"
    temperature = fit_temperature(z, y, t_min=t_min, t_max=t_max, output=output) if fitted else 1.0
    at_bound = fitted and _on_bound(temperature, t_min, t_max)
    name = CRITERIA[output]
    loss_before, loss_cal = criterion(z, y, output), criterion(z, y, output, temperature)
    loss_worse = loss_cal > loss_before + _NLL_TOL
    if at_bound:
        log.warning(
            "WARNING: temperature %.4g landed on its bound [%g, %g]: widen calibration.t_min/"
            "t_max or check the model (flagged as at_bound in the metrics)",
            temperature,
            t_min,
            t_max,
        )
    if loss_worse:
        log.warning(
            "WARNING: temperature %.4g makes the validation %s worse (%.5f -> %.5f): "
            "flagged as %s_worse in the metrics",
            temperature,
            _LABELS[name],
            loss_before,
            loss_cal,
            name,
        )
    before = reliability_bins(probabilities(z, output), y, n_bins, binning)
    after = reliability_bins(probabilities(z, output, temperature), y, n_bins, binning)
    return CalibrationResult(
        method=method,
        temperature=float(temperature),
        at_bound=bool(at_bound),
        loss_worse=bool(loss_worse),
        acc=accuracy(z, y),
        loss=loss_before,
        loss_calibrated=loss_cal,
        ece=before.ece,
        ece_calibrated=after.ece,
        criterion=name,
    )


def load_temperature(path: str | Path) -> float:
    """Read the temperature that the calibrate stage wrote to ``path`` (``T > 0``)."""
    if not Path(path).is_file():
        raise DataError(f"{path} not found: run `dvc repro calibrate` first")
    temperature = read_json(path).get("temperature")
    if not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise DataError(f"{path}: temperature={temperature!r} is not a number > 0: rerun calibrate")
    return float(temperature)


def _check_not_degenerate(y: np.ndarray, n_classes: int) -> None:
    """Refuse a validation set that cannot identify a temperature (empty or one class)."""
    if len(y) == 0:
        raise DataError("the validation split is empty: cannot fit a temperature on no samples")
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(
            f"the validation split holds only class {classes[0]} ({len(y)} samples): a "
            f"temperature fitted on one of {n_classes} classes would only learn to be "
            "over-confident; rebuild the split stratified (`dvc repro preprocess`)"
        )


def _on_bound(temperature: float, t_min: float, t_max: float) -> bool:
    log_t = math.log(temperature)
    return min(abs(log_t - math.log(t_min)), abs(log_t - math.log(t_max))) < _BOUND_TOL
