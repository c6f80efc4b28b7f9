"""Prepared splits and the pixel scaler: the arrays every stage after preprocess reads.

Splits are stored as uint8 pixels plus one scaler (mean and scale per pixel) instead of float32
features: 4x smaller on disk and in DVC's cache, and the cast costs ~0.1 s per load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_softmax.atomic import load_npz, save_npz
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


@dataclass(frozen=True)
class Scaler:
    """Per-pixel affine scaling ``(X - mean) / scale``, fitted on the training split only.

    mean, scale : ndarray of shape (n_features,), float64
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, method: str, std_floor: float = 25.5) -> Scaler:
        """Fit ``standardize`` (per-pixel mean, std floored) or ``unit`` (divide by 255).

        The floor matters: a border pixel that is almost always 0 has a std near 0.2, so one
        image with ink there (value 163) would become a feature of ~800 and a logit of ~700,
        dominating the test NLL and the temperature. Flooring the std at 25.5 (10% of the
        pixel range) keeps every feature within about +-10.
        """
        n_features = X.shape[1]
        if method == "unit":
            return cls(np.zeros(n_features), np.full(n_features, 255.0))
        if method == "standardize":
            mean = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
            return cls(mean, np.maximum(std, std_floor))
        raise ValueError(f"unknown scaling {method!r}")

    def transform(self, X: np.ndarray, dtype: str | np.dtype = np.float32) -> np.ndarray:
        """Return scaled features of shape (n_samples, n_features) in ``dtype``."""
        dtype = np.dtype(dtype)
        out = X.astype(dtype)
        out -= self.mean.astype(dtype)
        out /= self.scale.astype(dtype)
        return out


def split_path(prepared_dir: str | Path, name: str) -> Path:
    """Return the ``.npz`` path of split ``name`` in the prepared folder."""
    return Path(prepared_dir) / f"{name}.npz"


def scaler_path(prepared_dir: str | Path) -> Path:
    """Return the path of the fitted scaler in the prepared folder."""
    return Path(prepared_dir) / "scaler.npz"


def save_split(path: str | Path, split: Split) -> None:
    save_npz(path, X=split.X, y=split.y)


def load_split(path: str | Path) -> Split:
    """Load a split and check that pixels and labels agree in count."""
    arrays = _load(path, ("X", "y"))
    X, y = arrays["X"], arrays["y"]
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise DataError(f"{path}: X {X.shape} and y {y.shape} do not form a split")
    return Split(X=X, y=y.astype(np.int64))


def save_scaler(path: str | Path, scaler: Scaler) -> None:
    save_npz(path, mean=scaler.mean, scale=scaler.scale)


def load_scaler(path: str | Path) -> Scaler:
    arrays = _load(path, ("mean", "scale"))
    return Scaler(mean=arrays["mean"], scale=arrays["scale"])


def _load(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise DataError(f"{path} not found: run `dvc repro preprocess` first")
    arrays = load_npz(path)
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks arrays {missing}: delete it and rerun `dvc repro`")
    return arrays
