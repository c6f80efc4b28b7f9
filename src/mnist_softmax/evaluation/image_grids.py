"""Image grids of the evaluate stage: the weight templates and the most confident mistakes.

Same rendering rules as :mod:`mnist_softmax.evaluation.charts` (``Figure`` + Agg, fixed sizes
at ``DPI``); :mod:`mnist_softmax.evaluation.figures` draws every figure of the stage.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mnist_softmax.evaluation.charts import save_figure

WEIGHTS_SIZE = (10.0, 4.5)  # inches: 1000 x 450 px
_MISTAKE_COLUMNS = 8
_MISTAKE_CELL = (1.5, 1.8)  # inches per image (width, height incl. its title)
_HEADER = 0.4  # inches above the grid for the figure title


def plot_weights(
    W: np.ndarray, image_shape: tuple[int, int], class_names: list[str], path: str | Path
) -> None:
    """Write the weight templates of :func:`build_weights` as a PNG."""
    save_figure(build_weights(W, image_shape, class_names), path)


def build_weights(W: np.ndarray, image_shape: tuple[int, int], class_names: list[str]) -> Figure:
    """Draw each class's weight column reshaped to an image (red: evidence for, blue: against).

    W : ndarray of shape (n_features, n_classes), ``n_features == prod(image_shape)``
    """
    n_classes = W.shape[1]
    cols = math.ceil(n_classes / 2)
    fig = Figure(figsize=WEIGHTS_SIZE)
    axes = fig.subplots(2, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n_classes:
            continue
        template = W[:, k].reshape(image_shape)
        # Symmetric (white = weight 0) and robust: a few rare border pixels carry huge weights
        # and would wash out the template, so they saturate at the 99th percentile instead.
        limit = float(np.quantile(np.abs(template), 0.99)) or 1.0
        ax.imshow(template, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(str(class_names[k]))
    fig.suptitle("learned weight templates (one column of W per class)")
    return fig


def most_confident_mistakes(proba: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Return indices of up to ``n`` misclassified rows, most confident first, shape (<= n,).

    proba : ndarray of shape (n_samples, n_classes); y : ndarray of shape (n_samples,)
    """
    wrong = np.flatnonzero(proba.argmax(axis=1) != y)
    confidence = proba[wrong].max(axis=1)
    return wrong[np.argsort(-confidence, kind="stable")[:n]]


def mistakes_grid_size(n_shown: int) -> tuple[float, float]:
    """Return the figure size in inches (width, height) of a grid of ``n_shown`` mistakes."""
    rows = max(1, math.ceil(n_shown / _MISTAKE_COLUMNS))
    return _MISTAKE_COLUMNS * _MISTAKE_CELL[0], rows * _MISTAKE_CELL[1] + _HEADER


def build_mistakes(
    X: np.ndarray,
    y: np.ndarray,
    proba: np.ndarray,
    class_names: list[str],
    image_shape: tuple[int, int],
    n: int,
) -> Figure:
    """Draw the ``n`` most confident test mistakes with true and predicted labels.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), raw pixels
    y : ndarray of shape (n_samples,), true class indices
    proba : ndarray of shape (n_samples, n_classes), the probabilities to rank by
    class_names : length n_classes; image_shape : (height, width); n : images to show
    path : PNG to write

    Returns
    -------
    ndarray of shape (n_shown,)
        The plotted row indices, most confident first.
    """
    shown = most_confident_mistakes(proba, y, n)
    fig = Figure(figsize=mistakes_grid_size(len(shown)))
    rows = max(1, math.ceil(len(shown) / _MISTAKE_COLUMNS))
    axes = fig.subplots(rows, _MISTAKE_COLUMNS, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, shown, strict=False):
        pred = int(proba[i].argmax())
        ax.imshow(X[i].reshape(image_shape), cmap="gray_r")
        ax.set_title(
            f"true {class_names[y[i]]}\npred {class_names[pred]} ({proba[i, pred]:.3f})",
            fontsize=8,
        )
    if len(shown) == 0:
        axes[0, 0].set_title("no mistakes")
    fig.suptitle(
        "most confident test mistakes (calibrated probability)",
        y=1 - 0.1 / fig.get_figheight(),
        va="top",
    )
    # Fixed margins: tight_layout on dozens of axes costs more than all the drawing.
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - (_HEADER + 0.35) / height, hspace=0.6
    )
    return fig
