"""The trained model and its file: weights, the pixel scaler, class names, image shape.

``models/model.npz`` is a plain ``.npz`` (loaded with ``allow_pickle=False``) that every stage
after train, the MLflow pyfunc and ``mnist-softmax predict`` read. The model carries its scaler,
so it predicts from raw pixels exactly as training saw them (:meth:`Scaler.transform`), and
its output kind (``softmax`` or ``sparsemax``), so every reader turns logits into the same
probabilities. A file written before output kinds existed holds no ``output`` and is softmax;
one written before deskewing existed holds no ``scaler_deskew_shape`` and reads raw pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_softmax.atomic import load_stage_npz, save_npz
from mnist_softmax.data.scaler import Scaler, scaler_arrays, scaler_from_arrays
from mnist_softmax.errors import DataError
from mnist_softmax.model.numerics import predict_logits
from mnist_softmax.model.outputs import OUTPUTS, probabilities

_ARRAYS = ("W", "b", "class_names", "scaler_mean", "scaler_scale", "image_shape", "config_hash")


@dataclass(frozen=True)
class SoftmaxModel:
    """A trained model with its input scaling, so it predicts from raw pixels.

    W : ndarray of shape (n_features, n_classes); b : ndarray of shape (n_classes,)
    class_names : ndarray of shape (n_classes,), str; image_shape : ndarray of shape (2,), int
    scaler : the scaler fitted on the training split; config_hash : the train params' hash
    output : the output kind, ``softmax`` or ``sparsemax`` (see :mod:`.outputs`)
    """

    W: np.ndarray
    b: np.ndarray
    class_names: np.ndarray
    scaler: Scaler
    image_shape: np.ndarray
    config_hash: str = ""
    output: str = "softmax"

    def features(self, X: np.ndarray) -> np.ndarray:
        """Return the scaled features the weights expect, shape (n_samples, n_features).

        X : raw pixels of shape (n_samples, n_features) or (n_samples, *image_shape)
        """
        X = np.asarray(X)
        return self.scaler.transform(X.reshape(len(X), -1), self.W.dtype)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Return logits of shape (n_samples, n_classes) for raw pixels (uint8 or float)."""
        return predict_logits(self.features(X), self.W, self.b)

    def predict_proba(self, X: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Return class probabilities ``output(logits / T)``, float64 (n_samples, n_classes).

        ``output`` is softmax or sparsemax, as the model was trained (sparsemax: exact zeros).
        """
        return probabilities(self.logits(X), self.output, temperature)


def save_model(path: str | Path, model: SoftmaxModel) -> None:
    """Write the model as a plain ``.npz`` (atomically; no pickled objects)."""
    save_npz(
        path,
        W=model.W,
        b=model.b,
        class_names=model.class_names,
        **scaler_arrays(model.scaler, prefix="scaler_"),
        image_shape=model.image_shape,
        config_hash=np.array(model.config_hash),
        output=np.array(model.output),
    )


def load_model(path: str | Path) -> SoftmaxModel:
    """Load a model written by :func:`save_model`, checking that every array fits the others."""
    try:
        arrays = load_stage_npz(path, _ARRAYS, "train")
    except (OSError, ValueError) as exc:
        msg = f"{path} is not a readable model file ({exc}): rerun `dvc repro train`"
        raise DataError(msg) from None
    _check_shapes(path, arrays)
    return SoftmaxModel(
        W=arrays["W"],
        b=arrays["b"],
        class_names=arrays["class_names"],
        scaler=scaler_from_arrays(arrays, prefix="scaler_"),
        image_shape=arrays["image_shape"],
        config_hash=str(arrays["config_hash"]),
        output=_output_kind(path, arrays),
    )


def _output_kind(path: str | Path, arrays: dict[str, np.ndarray]) -> str:
    """Return the file's output kind; files from before output kinds existed are softmax."""
    output = str(arrays["output"]) if "output" in arrays else "softmax"
    if output not in OUTPUTS:
        raise DataError(f"{path}: output {output!r} is not one of {' | '.join(OUTPUTS)}")
    return output


def _check_shapes(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    W = arrays["W"]
    if W.ndim != 2:
        raise DataError(f"{path}: W has shape {W.shape}, expected (n_features, n_classes)")
    n_features, n_classes = W.shape
    expected = {
        "b": (n_classes,),
        "class_names": (n_classes,),
        "scaler_mean": (n_features,),
        "scaler_scale": (n_features,),
        "image_shape": (2,),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise DataError(f"{path}: {name} has shape {arrays[name].shape}, expected {shape}")
    deskew_shape = arrays.get("scaler_deskew_shape", np.array([], np.int64))
    if deskew_shape.size and tuple(deskew_shape) != tuple(arrays["image_shape"]):
        raise DataError(
            f"{path}: deskews {deskew_shape} images, image_shape is {arrays['image_shape']}"
        )
    if int(np.prod(arrays["image_shape"])) != n_features:
        raise DataError(f"{path}: image_shape {arrays['image_shape']} != {n_features} features")
