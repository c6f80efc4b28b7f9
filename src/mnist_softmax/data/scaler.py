"""The pixel scaling: fitted on the training split by preprocess, applied by everyone else.

:meth:`Scaler.transform` is the only place raw pixels become features: training calls it on
the splits, and the model file carries the fitted scaler so evaluation, the MLflow pyfunc and
``predict`` build the very same features from raw pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_softmax.atomic import load_stage_npz, save_npz
from mnist_softmax.data.splits import check_finite

SCALINGS = ("standardize", "unit")


@dataclass(frozen=True)
class Scaler:
    """Per-pixel affine scaling ``(X - mean) / scale``, fitted on the training split only.

    mean, scale : ndarray of shape (n_features,), float64
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, method: str, std_floor: float) -> Scaler:
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
        raise ValueError(f"unknown scaling {method!r} (allowed: {SCALINGS})")

    def transform(self, X: np.ndarray, dtype: str | np.dtype = np.float32) -> np.ndarray:
        """Return scaled features of shape (n_samples, n_features) in ``dtype``.

        X : raw pixels of shape (n_samples, n_features), any numeric dtype
        """
        dtype = np.dtype(dtype)
        out = np.asarray(X).astype(dtype)
        out -= self.mean.astype(dtype)
        out /= self.scale.astype(dtype)
        return out


def scaler_path(prepared_dir: str | Path) -> Path:
    """Return the path of the fitted scaler in the prepared folder."""
    return Path(prepared_dir) / "scaler.npz"


def save_scaler(path: str | Path, scaler: Scaler) -> None:
    save_npz(path, mean=scaler.mean, scale=scaler.scale)


def load_scaler(path: str | Path) -> Scaler:
    arrays = load_stage_npz(path, ("mean", "scale"), "preprocess")
    for key in ("mean", "scale"):
        check_finite(arrays[key], f"{path} {key}")
    return Scaler(mean=arrays["mean"], scale=arrays["scale"])
