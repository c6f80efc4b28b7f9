"""Raw pixels to features: optional deskewing, then per-pixel scaling fitted on the train split.

:meth:`Scaler.transform` is the only place raw pixels become features: training calls it on
the splits, and the model file carries the fitted scaler so evaluation, the MLflow pyfunc,
``predict``, serving and the explorer build the very same features from raw pixels. Deskewing
(:mod:`mnist_softmax.data.deskew`) lives here for that reason: it is part of the model, so
every reader of a deskewed model deskews, and a model without it reads pixels as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_softmax.atomic import load_stage_npz, save_npz
from mnist_softmax.data.deskew import deskew
from mnist_softmax.data.splits import check_finite

SCALINGS = ("standardize", "unit")


@dataclass(frozen=True)
class Scaler:
    """Per-pixel affine scaling ``(X - mean) / scale``, fitted on the training split only.

    mean, scale : ndarray of shape (n_features,), float64
    deskew_shape : (height, width) to deskew images of that shape first, or None
    """

    mean: np.ndarray
    scale: np.ndarray
    deskew_shape: tuple[int, int] | None = None

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        method: str,
        std_floor: float,
        deskew_shape: tuple[int, int] | None = None,
    ) -> Scaler:
        """Fit ``standardize`` (per-pixel mean, std floored) or ``unit`` (divide by 255).

        The floor matters: a border pixel that is almost always 0 has a std near 0.2, so one
        image with ink there (value 163) would become a feature of ~800 and a logit of ~700,
        dominating the test NLL and the temperature. Flooring the std at 25.5 (10% of the
        pixel range) keeps every feature within about +-10.
        """
        n_features = X.shape[1]
        if deskew_shape is not None:
            X = deskew(X, deskew_shape)
        if method == "unit":
            return cls(np.zeros(n_features), np.full(n_features, 255.0), deskew_shape)
        if method == "standardize":
            mean = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
            return cls(mean, np.maximum(std, std_floor), deskew_shape)
        raise ValueError(f"unknown scaling {method!r} (allowed: {SCALINGS})")

    def pixels(self, X: np.ndarray) -> np.ndarray:
        """Return the pixels the weights read before scaling: deskewed if this model deskews.

        X : raw pixels of shape (n_samples, n_features); the result has the same shape.
        """
        if self.deskew_shape is None:
            return np.asarray(X)
        return deskew(X, self.deskew_shape)

    def transform(self, X: np.ndarray, dtype: str | np.dtype = np.float32) -> np.ndarray:
        """Return scaled features of shape (n_samples, n_features) in ``dtype``.

        X : raw pixels of shape (n_samples, n_features), any numeric dtype
        """
        dtype = np.dtype(dtype)
        out = self.pixels(X).astype(dtype)  # a copy: the scaling below works in place
        out -= self.mean.astype(dtype)
        out /= self.scale.astype(dtype)
        return out


def scaler_path(prepared_dir: str | Path) -> Path:
    """Return the path of the fitted scaler in the prepared folder."""
    return Path(prepared_dir) / "scaler.npz"


def save_scaler(path: str | Path, scaler: Scaler) -> None:
    save_npz(path, **scaler_arrays(scaler))


def load_scaler(path: str | Path) -> Scaler:
    arrays = load_stage_npz(path, ("mean", "scale"), "preprocess")
    for key in ("mean", "scale"):
        check_finite(arrays[key], f"{path} {key}")
    return scaler_from_arrays(arrays)


def scaler_arrays(scaler: Scaler, prefix: str = "") -> dict[str, np.ndarray]:
    """The scaler as plain arrays (no pickle); an empty ``deskew_shape`` means no deskewing."""
    shape = np.array(scaler.deskew_shape or [], dtype=np.int64)
    return {f"{prefix}mean": scaler.mean, f"{prefix}scale": scaler.scale,
            f"{prefix}deskew_shape": shape}  # fmt: skip


def scaler_from_arrays(arrays: dict[str, np.ndarray], prefix: str = "") -> Scaler:
    """Inverse of :func:`scaler_arrays`; files from before deskewing existed do not deskew."""
    shape = arrays.get(f"{prefix}deskew_shape", np.array([], dtype=np.int64))
    deskew_shape = (int(shape[0]), int(shape[1])) if shape.size == 2 else None
    return Scaler(arrays[f"{prefix}mean"], arrays[f"{prefix}scale"], deskew_shape)
