"""The evaluate stage's five PNGs: charts and image grids, drawn by one call.

Charts (reliability, confusion, curves) live in :mod:`mnist_softmax.evaluation.charts`, image
grids (weights, mistakes) in :mod:`mnist_softmax.evaluation.image_grids`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mnist_softmax.evaluation import charts, image_grids
from mnist_softmax.evaluation.evaluate import Evaluation

FIGURES = ("reliability", "confusion", "curves", "weights", "mistakes")


def write_figures(
    result: Evaluation,
    W: np.ndarray,
    image_shape: tuple[int, int],
    X: np.ndarray,
    curves: pd.DataFrame,
    figures_dir: str | Path,
    n_mistakes: int,
) -> dict[str, Path]:
    """Write the five evaluate figures as ``<figures_dir>/<name>.png``; return name -> path.

    Parameters
    ----------
    result : Evaluation of the test split
    W : ndarray of shape (n_features, n_classes), the model weights
    image_shape : (height, width), ``height * width == n_features``
    X : ndarray of shape (n_samples, n_features), raw test pixels in the order of ``result.y``
    curves : DataFrame of ``reports/curves.csv``
    figures_dir : folder of the PNGs; n_mistakes : images in the mistakes grid
    """
    out = {name: Path(figures_dir) / f"{name}.png" for name in FIGURES}
    names = list(result.class_names)
    charts.plot_reliability(result.bins, out["reliability"])
    charts.plot_confusion(result.confusion, names, out["confusion"])
    charts.plot_curves(curves, out["curves"])
    image_grids.plot_weights(W, image_shape, names, out["weights"])
    mistakes = image_grids.build_mistakes(
        X, result.y, result.proba_calibrated, names, image_shape, n_mistakes
    )
    charts.save_figure(mistakes, out["mistakes"])
    return out
