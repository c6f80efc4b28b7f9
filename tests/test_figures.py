"""Figures: what each one shows, read back from its matplotlib artists, checked independently."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shipped import evaluation_args
from sklearn.metrics import confusion_matrix

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
    return evaluate(3.0 * z, y, 3.0, NAMES, rng, **evaluation_args(bootstrap_samples=50))


def independent_bins(proba: np.ndarray, y: np.ndarray, edges: np.ndarray):
    """Return (left, width, accuracy, count) of the non-empty bins, computed with plain numpy."""
    confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == y
    left, width, accuracy, count = [], [], [], []
    for b, (lo, hi) in enumerate(itertools.pairwise(edges)):
        inside = (confidence <= hi) & ((confidence > lo) | (b == 0))
        if inside.any():
            left.append(lo)
            width.append(hi - lo)
            accuracy.append(correct[inside].mean())
            count.append(inside.sum())
    return np.array(left), np.array(width), np.array(accuracy), np.array(count)


def test_reliability_bars_are_the_bins_of_the_probabilities(result: Evaluation) -> None:
    fig = charts.build_reliability(result.bins)
    top, bottom = fig.axes[:2], fig.axes[2:]
    for col, proba in enumerate((result.proba, result.proba_calibrated)):
        edges = np.linspace(0.0, 1.0, 16)  # the shipped evaluation: 15 uniform bins
        left, width, accuracy, count = independent_bins(proba, result.y, edges)
        bars = top[col].containers[0]
        np.testing.assert_allclose([p.get_x() for p in bars], left)
        np.testing.assert_allclose([p.get_width() for p in bars], width)
        np.testing.assert_allclose([p.get_height() for p in bars], accuracy)
        np.testing.assert_array_equal([p.get_height() for p in bottom[col].containers[0]], count)


def test_confusion_cells_are_sklearn_confusion_matrix(result: Evaluation) -> None:
    fig = charts.build_confusion(result.confusion, NAMES)
    expected = confusion_matrix(result.y, result.proba.argmax(axis=1), labels=range(10))
    cells = {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
        for t in fig.axes[0].texts
    }
    assert cells == {(i, j): str(n) for (i, j), n in np.ndenumerate(expected)}


def test_curves_lines_are_the_csv_columns(tmp_path) -> None:
    csv = tmp_path / "curves.csv"
    with pytest.raises(DataError, match="not found"):
        read_curves(csv)
    epochs = np.arange(1, 6)
    columns = {"epoch": epochs, "train/nll": 1 / epochs, "val/nll": 1.1 / epochs}
    columns |= {"train/acc": 1 - 0.1 / epochs, "val/acc": 1 - 0.12 / epochs}
    pd.DataFrame(columns).to_csv(csv, index=False)
    fig = charts.build_curves(read_curves(csv))
    for ax, metric in zip(fig.axes, ("nll", "acc"), strict=True):
        assert [line.get_label() for line in ax.lines] == ["train", "val"]
        for line, split in zip(ax.lines, ("train", "val"), strict=True):
            np.testing.assert_allclose(line.get_xdata(), epochs)
            np.testing.assert_allclose(line.get_ydata(), columns[f"{split}/{metric}"])


def test_weight_images_are_the_columns_of_W(tmp_path) -> None:
    W = np.random.default_rng(1).normal(size=(784, 10)).astype(np.float32)
    fig = image_grids.build_weights(W, SHAPE, NAMES)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == NAMES
    for k, ax in enumerate(shown):
        np.testing.assert_array_equal(ax.images[0].get_array(), W[:, k].reshape(SHAPE))
    path = tmp_path / "weights.png"
    image_grids.plot_weights(W, SHAPE, NAMES, path)
    assert png_size(path) == px(image_grids.WEIGHTS_SIZE)


def test_mistakes_titles_name_the_most_confident_errors(result: Evaluation) -> None:
    X = np.random.default_rng(2).integers(0, 256, (600, 784), dtype=np.uint8)
    proba, y = result.proba_calibrated, result.y
    fig = image_grids.build_mistakes(X, y, proba, NAMES, SHAPE, 10)
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    top = wrong[np.argsort(proba[wrong].max(axis=1))[::-1][:10]]
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title().splitlines()[:2] for ax in shown] == [
        [f"true {y[i]}", f"pred {pred[i]} ({proba[i, pred[i]]:.3f})"] for i in top
    ]
    for ax, i in zip(shown, top, strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), X[i].reshape(SHAPE))


def test_mistakes_grid_without_mistakes() -> None:
    fig = image_grids.build_mistakes(
        np.zeros((10, 784)), np.arange(10), np.eye(10), NAMES, SHAPE, 5
    )
    assert not any(ax.images for ax in fig.axes)
    assert fig.axes[0].get_title() == "no mistakes"


def test_write_figures_writes_all_five(result: Evaluation, tmp_path) -> None:
    curves = pd.DataFrame({"epoch": [1, 2], "train/nll": [0.5, 0.4], "val/nll": [0.6, 0.5]})
    X = np.zeros((600, 784), dtype=np.uint8)
    W = np.zeros((784, 10))
    out = figures.write_figures(result, W, SHAPE, X, curves, tmp_path / "figures", 4)
    assert sorted(out) == sorted(figures.FIGURES)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(
        f"{name}.png" for name in figures.FIGURES
    )
