"""Figures of the evaluate stage: reliability diagram, confusion matrix, learning curves.

Figures are built on ``matplotlib.figure.Figure`` and rendered by the Agg canvas, never through
``pyplot``: no GUI backend, no global figure state, nothing to close, headless by construction.
Sizes are fixed (inches x ``DPI``) so a PNG's pixel size is known in advance (tests check it).
Image grids (weights, mistakes) live in :mod:`mnist_softmax.evaluation.image_grids`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mnist_softmax.atomic import atomic_path
from mnist_softmax.evaluation.reliability import ReliabilityBins

DPI = 100
RELIABILITY_SIZE = (10.0, 6.0)  # inches: 1000 x 600 px
CONFUSION_SIZE = (7.0, 6.0)  # 700 x 600 px
CURVES_SIZE = (10.0, 4.0)  # 1000 x 400 px
# class names are data: "$5 note" must be drawn as written, not parsed as TeX math (every
# figure module imports save_figure from here, so this holds before any text is created)
matplotlib.rcParams["text.parse_math"] = False


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` as a PNG at ``DPI`` and move it into place atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def plot_reliability(bins: Mapping[str, ReliabilityBins], path: str | Path) -> None:
    """Write the reliability diagram of :func:`build_reliability` as a PNG."""
    save_figure(build_reliability(bins), path)


def build_reliability(bins: Mapping[str, ReliabilityBins]) -> Figure:
    """Draw one reliability diagram per model (columns) with its bin counts below it.

    bins : mapping of model name to ReliabilityBins, e.g. ``{"uncalibrated": ..., ...}``.
    Only non-empty bins are drawn (accuracy bars, gap bars, counts below).
    """
    fig = Figure(figsize=RELIABILITY_SIZE)
    axes = fig.subplots(2, len(bins), sharex=True, squeeze=False, height_ratios=[3, 1])
    for col, (name, b) in enumerate(bins.items()):
        top, bottom = axes[0, col], axes[1, col]
        filled = b.count > 0
        left, right = b.edges[:-1][filled], b.edges[1:][filled]
        acc, conf, count = b.accuracy[filled], b.confidence[filled], b.count[filled]
        top.bar(left, acc, width=right - left, align="edge", edgecolor="k", label="accuracy")
        top.bar(
            left,
            conf - acc,
            bottom=acc,
            width=right - left,
            align="edge",
            facecolor="none",
            edgecolor="tab:red",
            hatch="//",
            label="gap to confidence",
        )
        top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        top.plot(conf, acc, "o", color="k", ms=3, label="bin (confidence, accuracy)")
        top.set(
            xlim=(0, 1),
            ylim=(0, 1),
            ylabel="accuracy",
            title=f"{name}: ECE {b.ece:.4f}, MCE {b.mce:.4f}",
        )
        top.legend(loc="upper left", fontsize="small")
        bottom.bar(left, count, width=right - left, align="edge", edgecolor="k", color="0.6")
        bottom.set(yscale="log", xlabel="confidence (top-class probability)", ylabel="count")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.09, top=0.94, hspace=0.08, wspace=0.18)
    return fig


def plot_confusion(confusion: np.ndarray, class_names: list[str], path: str | Path) -> None:
    """Write the confusion matrix of :func:`build_confusion` as a PNG."""
    save_figure(build_confusion(confusion, class_names), path)


def build_confusion(confusion: np.ndarray, class_names: list[str]) -> Figure:
    """Draw the confusion matrix (rows actual, columns predicted) with counts in the cells.

    confusion : ndarray of shape (n_classes, n_classes); class_names : length n_classes
    """
    fig = Figure(figsize=CONFUSION_SIZE)
    ax = fig.subplots()
    # Log colour scale: the diagonal (~1000) would otherwise wash out the errors (~10).
    image = ax.imshow(np.log1p(confusion), cmap="Blues")
    threshold = np.log1p(confusion).max() / 2
    for (i, j), n in np.ndenumerate(confusion):
        colour = "white" if np.log1p(n) > threshold else "black"
        ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color=colour)
    ticks = np.arange(len(class_names))
    ax.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=class_names,
        yticklabels=class_names,
        xlabel="predicted",
        ylabel="actual",
        title="test confusion matrix",
    )
    if max(len(str(name)) for name in class_names) > 2:  # long names would overlap side by side
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    return fig


def plot_curves(curves: pd.DataFrame, path: str | Path) -> None:
    """Write the learning curves of :func:`build_curves` as a PNG."""
    save_figure(build_curves(curves), path)


def build_curves(curves: pd.DataFrame) -> Figure:
    """Draw train/val loss and accuracy against the ``epoch`` column of ``reports/curves.csv``.

    The loss is the NLL, or the sparsemax loss for a sparsemax model (its curves' columns).
    """
    fig = Figure(figsize=CURVES_SIZE)
    axes = fig.subplots(1, 2)
    loss = "sparsemax_loss" if "val/sparsemax_loss" in curves else "nll"
    for ax, metric in zip(axes, (loss, "acc"), strict=True):
        for split in ("train", "val"):
            column = f"{split}/{metric}"
            if column in curves:
                ax.plot(curves["epoch"], curves[column], marker=".", label=split)
        ax.set(xlabel="epoch (iteration for L-BFGS)", ylabel=metric, title=f"{metric} per epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.2)
    return fig
