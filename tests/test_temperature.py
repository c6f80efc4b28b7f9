"""Temperature scaling: recovers a known temperature, keeps accuracy, respects and flags bounds."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from shipped import calibration_args, temperature_args

from mnist_softmax.atomic import write_json
from mnist_softmax.errors import DataError
from mnist_softmax.evaluation.temperature import calibrate, fit_temperature, load_temperature
from mnist_softmax.model.numerics import nll


def _calibrated_logits(n: int = 4000, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return logits and labels drawn from softmax(logits): calibrated by construction (T = 1)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.5, size=(n, k))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z, y


def test_overconfident_logits_give_temperature_near_three() -> None:
    z, y = _calibrated_logits()
    assert fit_temperature(3.0 * z, y, **temperature_args()) == pytest.approx(3.0, rel=0.05)


def test_fit_matches_a_grid_search() -> None:
    z, y = _calibrated_logits(n=1000, seed=1)
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 2001))
    best = grid[np.argmin([nll(2.0 * z / t, y) for t in grid])]
    assert fit_temperature(2.0 * z, y, **temperature_args()) == pytest.approx(best, rel=2e-3)


def test_accuracy_is_identical_before_and_after() -> None:
    z, y = _calibrated_logits(seed=2)
    result = calibrate(3.0 * z, y, **calibration_args())
    assert result.acc == np.mean(z.argmax(axis=1) == y)
    np.testing.assert_array_equal(z.argmax(axis=1), (z / result.temperature).argmax(axis=1))
    assert result.loss_calibrated < result.loss
    assert result.ece_calibrated < result.ece


@pytest.mark.parametrize(("scale", "t_min", "t_max"), [(3.0, 0.5, 2.0), (0.1, 0.5, 2.0)])
def test_temperature_stays_in_bounds_and_is_flagged(
    scale: float, t_min: float, t_max: float, caplog: pytest.LogCaptureFixture
) -> None:
    z, y = _calibrated_logits(seed=3)
    with caplog.at_level(logging.WARNING):
        result = calibrate(scale * z, y, **calibration_args(t_min=t_min, t_max=t_max))
    assert t_min <= result.temperature <= t_max
    assert result.at_bound
    assert result.to_metrics()["at_bound"] is True
    assert "landed on its bound" in caplog.text


def test_worse_validation_nll_is_flagged(caplog: pytest.LogCaptureFixture) -> None:
    z, y = _calibrated_logits(seed=4)  # best T is about 1, outside [2, 5]
    with caplog.at_level(logging.WARNING):
        result = calibrate(z, y, **calibration_args(t_min=2.0, t_max=5.0))
    assert result.loss_worse and result.at_bound
    assert result.loss_calibrated > result.loss
    assert "makes the validation NLL worse" in caplog.text


def test_method_none_keeps_temperature_one() -> None:
    z, y = _calibrated_logits(n=500, seed=5)
    result = calibrate(3.0 * z, y, **calibration_args(method="none"))
    assert result.temperature == 1.0
    assert result.loss_calibrated == result.loss and result.ece_calibrated == result.ece
    assert not result.at_bound and not result.loss_worse
    assert result.to_params() == {"method": "none", "temperature": 1.0}


def test_metrics_layout_matches_the_shared_format() -> None:
    z, y = _calibrated_logits(n=500, seed=6)
    metrics = calibrate(z, y, **calibration_args()).to_metrics()
    assert set(metrics) == {"temperature", "at_bound", "nll_worse", "val"}
    assert set(metrics["val"]) == {"acc", "nll", "nll_calibrated", "ece", "ece_calibrated"}


@pytest.mark.parametrize(
    ("y", "message"), [(np.zeros(0, dtype=int), "empty"), (np.full(50, 7), "only class 7")]
)
def test_degenerate_validation_set_is_a_clear_error(y: np.ndarray, message: str) -> None:
    z = np.random.default_rng(7).normal(size=(len(y), 10))
    with pytest.raises(DataError, match=message):
        calibrate(z, y, **calibration_args())
    with pytest.raises(DataError, match=message):
        fit_temperature(z, y, **temperature_args())


def test_non_finite_or_mismatched_logits_are_data_errors() -> None:
    z, y = _calibrated_logits(n=100, seed=8)
    with pytest.raises(DataError, match="NaN or inf"):
        calibrate(np.where(z > 2, np.inf, z), y, **calibration_args())
    with pytest.raises(DataError, match="do not match"):
        calibrate(z[:-1], y, **calibration_args())


def test_load_temperature_checks_the_file(tmp_path) -> None:
    path = tmp_path / "calibration.json"
    with pytest.raises(DataError, match="not found"):
        load_temperature(path)
    write_json(path, {"method": "temperature", "temperature": -1.0})
    with pytest.raises(DataError, match="not a number > 0"):
        load_temperature(path)
    write_json(path, {"method": "temperature", "temperature": 1.5})
    assert load_temperature(path) == 1.5
