"""Prepared splits: the arrays every stage after preprocess reads.

Splits are stored as uint8 pixels (the scaler lives in :mod:`mnist_softmax.data.scaler`)
instead of float32 features: 4x smaller on disk and in DVC's cache, and the cast costs ~0.1 s
per load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_softmax.atomic import load_stage_npz, save_npz
from mnist_softmax.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One split of the data.

    X : ndarray of shape (n_samples, n_features), uint8 raw pixels
    y : ndarray of shape (n_samples,), integer class indices
    """

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def concat_splits(parts: list[Split]) -> Split:
    """One split holding ``parts`` in order (the training pool, the new batches' images)."""
    return Split(np.concatenate([p.X for p in parts]), np.concatenate([p.y for p in parts]))


def split_path(prepared_dir: str | Path, name: str) -> Path:
    """Return the ``.npz`` path of split ``name`` in the prepared folder."""
    return Path(prepared_dir) / f"{name}.npz"


def save_split(path: str | Path, split: Split) -> None:
    save_npz(path, X=split.X, y=split.y)


def load_split(path: str | Path) -> Split:
    """Load a split and check that pixels and labels agree in count."""
    arrays = load_stage_npz(path, ("X", "y"), "preprocess")
    X, y = arrays["X"], arrays["y"]
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise DataError(f"{path}: X {X.shape} and y {y.shape} do not form a split")
    check_finite(X, f"{path} X")
    return Split(X=X, y=y.astype(np.int64))


def check_finite(values: np.ndarray, where: str) -> None:
    """Raise DataError naming the count and first (row, column) of NaN/inf ``values``.

    Bad inputs would otherwise surface as a NaN loss at step 1 and be blamed on the
    learning rate. uint8 pixels cannot hold NaN: the check costs nothing for them.
    """
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad = ~np.isfinite(values)
    count = int(bad.sum())
    if count:
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        at = f"row {first[0]}, column {first[1]}" if len(first) == 2 else f"index {first[0]}"
        raise DataError(
            f"{where}: {count} NaN/inf value(s), the first at {at}: the input data is corrupt, "
            "not the learning rate; rerun `dvc repro -f preprocess`"
        )
