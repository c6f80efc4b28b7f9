"""The learning curves file: one row per epoch, written by train, read by evaluate and log.

``reports/curves.csv`` is a DVC plots file (x = epoch) and becomes MLflow's per-step metrics.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mnist_softmax.atomic import atomic_open
from mnist_softmax.errors import DataError


def curve_columns(loss: str = "nll") -> tuple[str, ...]:
    """Return the columns of a curves file whose model trains on ``loss`` (nll, sparsemax_loss)."""
    return ("epoch", f"train/{loss}", "train/acc", f"val/{loss}", "val/acc", "lr", "seconds")


CURVE_COLUMNS = curve_columns("nll")  # a softmax model's


def write_curves(path: str | Path, curves: pd.DataFrame) -> None:
    """Write the curves as CSV atomically."""
    with atomic_open(path) as handle:
        curves.to_csv(handle, index=False)


def read_curves(path: str | Path) -> pd.DataFrame:
    """Read the per-epoch curves (columns epoch, train/nll, val/nll, ... as written)."""
    if not Path(path).is_file():
        raise DataError(f"{path} not found: run `dvc repro train` first")
    curves = pd.read_csv(path)
    if "epoch" not in curves:
        raise DataError(f"{path} has no 'epoch' column (columns: {list(curves.columns)})")
    return curves
