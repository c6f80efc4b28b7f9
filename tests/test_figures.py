"""Figures: valid PNGs of the expected pixel size, and plotted data that matches the metrics."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnist_softmax.errors import DataError
from mnist_softmax.evaluation import charts, figures, image_grids
from mnist_softmax.evaluation.evaluate import Evaluation, evaluate
from mnist_softmax.model.curves import read_curves

SHAPE = (28, 28)
NAMES = [str(k) for k in range(10)]


def png_size(path: Path) -> tuple[int, int]:
    """Return (width, height) from the IHDR chunk, after checking the PNG signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def px(size_in: tuple[float, float]) -> tuple[int, int]:
    return round(size_in[0] * charts.DPI), round(size_in[1] * charts.DPI)


@pytest.fixture(scope="module")
def result() -> Evaluation:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 600)
    z = rng.normal(size=(600, 10))
    z[np.arange(600), y] += 2.0
    return evaluate(3.0 * z, y, 3.0, NAMES, rng, bootstrap_samples=50)


def test_reliability_png_and_plotted_bins_match_metrics(result: Evaluation, tmp_path) -> None:
    path = tmp_path / "reliability.png"
    plotted = charts.plot_reliability(result.bins, path)
    assert png_size(path) == px(charts.RELIABILITY_SIZE)
    test = result.metrics["test"]
    for model, key in (("uncalibrated", "ece"), ("calibrated", "ece_calibrated")):
        bars = plotted[plotted["model"] == model]
        ece = (bars["count"] * (bars["accuracy"] - bars["confidence"]).abs()).sum() / 600
        assert ece == pytest.approx(test[key])
    table = result.reliability_table()
    np.testing.assert_allclose(plotted["accuracy"], table["accuracy"])
    np.testing.assert_array_equal(plotted["count"], table["count"])


def test_confusion_png(result: Evaluation, tmp_path) -> None:
    path = tmp_path / "confusion.png"
    charts.plot_confusion(result.confusion, NAMES, path)
    assert png_size(path) == px(charts.CONFUSION_SIZE)


def test_curves_png_and_reader(tmp_path) -> None:
    csv = tmp_path / "curves.csv"
    with pytest.raises(DataError, match="not found"):
        read_curves(csv)
    epochs = np.arange(1, 6)
    columns = {"epoch": epochs, "train/nll": 1 / epochs, "val/nll": 1.1 / epochs}
    columns |= {"train/acc": 1 - 0.1 / epochs, "val/acc": 1 - 0.12 / epochs}
    pd.DataFrame(columns).to_csv(csv, index=False)
    path = tmp_path / "curves.png"
    charts.plot_curves(read_curves(csv), path)
    assert png_size(path) == px(charts.CURVES_SIZE)


def test_weights_png(tmp_path) -> None:
    path = tmp_path / "weights.png"
    W = np.random.default_rng(1).normal(size=(784, 10)).astype(np.float32)
    image_grids.plot_weights(W, SHAPE, NAMES, path)
    assert png_size(path) == px(image_grids.WEIGHTS_SIZE)


def test_mistakes_are_the_most_confident_errors(result: Evaluation, tmp_path) -> None:
    X = np.random.default_rng(2).integers(0, 256, (600, 784), dtype=np.uint8)
    path = tmp_path / "mistakes.png"
    shown = image_grids.plot_mistakes(X, result.y, result.proba_calibrated, NAMES, SHAPE, 10, path)
    assert png_size(path) == px(image_grids.mistakes_grid_size(10))
    proba = result.proba_calibrated
    wrong = proba.argmax(axis=1) != result.y
    assert len(shown) == 10 and wrong[shown].all()
    confidence = proba.max(axis=1)
    assert np.all(np.diff(confidence[shown]) <= 0)
    assert confidence[shown[-1]] >= np.sort(confidence[wrong])[-10]


def test_mistakes_grid_without_mistakes(tmp_path) -> None:
    proba = np.eye(10)
    shown = image_grids.plot_mistakes(
        np.zeros((10, 784)), np.arange(10), proba, NAMES, SHAPE, 5, tmp_path / "m.png"
    )
    assert len(shown) == 0 and png_size(tmp_path / "m.png") == px(image_grids.mistakes_grid_size(0))


def test_write_figures_writes_all_five(result: Evaluation, tmp_path) -> None:
    curves = pd.DataFrame({"epoch": [1, 2], "train/nll": [0.5, 0.4], "val/nll": [0.6, 0.5]})
    X = np.zeros((600, 784), dtype=np.uint8)
    W = np.zeros((784, 10))
    out = figures.write_figures(result, W, SHAPE, X, curves, tmp_path / "figures", 4)
    assert sorted(out) == sorted(figures.FIGURES)
    for path in out.values():
        assert png_size(path)[0] > 0
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(
        f"{name}.png" for name in figures.FIGURES
    )
