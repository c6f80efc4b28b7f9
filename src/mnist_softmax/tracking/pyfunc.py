"""The registered model as MLflow sees it: calibrated probabilities from raw pixels.

MLflow logs this file as "model from code" (``mlflow.models.set_model`` at the bottom): the
weights travel as the plain ``model.npz``, ``calibration.json`` and ``conformal.json`` artefacts,
never as a pickle,
and the class is rebuilt from this source when ``mlflow.pyfunc.load_model`` runs. Prediction
is :meth:`SoftmaxModel.predict_proba`, the scaler and softmax that evaluate uses, so the served
probabilities equal the evaluated ones bit for bit. The ``set`` column is the image's
prediction set (:mod:`mnist_softmax.evaluation.conformal`): a list of class names, most
probable first, that holds the true class with probability >= 1 - alpha; it may be empty.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import Array

ARTIFACT_MODEL = "model"  # key of models/model.npz in the pyfunc's artifacts
ARTIFACT_CALIBRATION = "calibration"  # key of models/calibration.json
ARTIFACT_CONFORMAL = "conformal"  # key of models/conformal.json (versions logged since sets)
LABEL = "label"  # output column: the most probable class name
SET = "set"  # output column: the prediction set, a list of class names (may be empty)
# what predict needs, pinned to this environment: mlflow would otherwise spend ~8 s inferring it
REQUIREMENTS = ("mlflow", "numpy", "pandas", "scipy")


class SoftmaxPyfunc(mlflow.pyfunc.PythonModel):
    """Scaler, softmax regression and temperature in one ``predict``.

    Input: raw pixels 0..255, integer or float, as an ndarray or DataFrame of shape
    (n_samples, 784) or images (n_samples, 28, 28): whatever MLflow's scoring server makes of
    ``dataframe_split``, ``dataframe_records``, CSV, ``inputs`` or ``instances``. Output:
    DataFrame of shape (n_samples, n_classes + 2), one float64 probability column per class
    name (rows summing to 1), ``label``, the most probable class name, and ``set``, the
    prediction set as a list of class names (absent for versions logged before sets existed).
    """

    conformal = None  # a Conformal, or None for a version logged without conformal.json

    def load_context(self, context: Any) -> None:
        """Load the model, its temperature and its conformal predictor from the artefacts.

        A conformal file that is listed but missing or corrupt is a DataError (loading fails):
        the model never serves a silently empty set.
        """
        # imported here, once MLflow has put the logged code_paths copy on sys.path
        from mnist_softmax.evaluation.conformal_file import load_conformal
        from mnist_softmax.evaluation.temperature import load_temperature
        from mnist_softmax.model.model_file import load_model

        self.model = load_model(context.artifacts[ARTIFACT_MODEL])
        self.temperature = load_temperature(context.artifacts[ARTIFACT_CALIBRATION])
        if ARTIFACT_CONFORMAL in context.artifacts:
            path = context.artifacts[ARTIFACT_CONFORMAL]
            self.conformal = load_conformal(path, len(self.model.class_names))

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict | None = None
    ) -> pd.DataFrame:
        """Return calibrated probabilities softmax(logits / T) and the label per pixel row.

        ``model_input`` arrives untyped (the signature has no input schema: a tensor schema
        makes MLflow's server refuse CSV, a column schema would demand 784 named columns), so
        :func:`pixel_rows` checks it here. Its reason goes out as an MlflowException, which
        the scoring server answers with HTTP 400 and the reason in ``message`` (any other
        exception becomes a generic "unexpected error" there).
        """
        try:
            X = pixel_rows(model_input, self.model.W.shape[0])
        except ValueError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from None
        proba = self.model.predict_proba(X, self.temperature)
        names = [str(c) for c in self.model.class_names]
        out = pd.DataFrame(proba, columns=names)
        out[LABEL] = np.asarray(names)[proba.argmax(axis=1)]
        if self.conformal is not None:
            from mnist_softmax.evaluation.conformal import set_names

            out[SET] = set_names(self.conformal.sets(proba), proba, names)
        return out


def pixel_rows(model_input: Any, n_features: int) -> np.ndarray:
    """Return raw pixels of shape (n_samples, n_features), uint8 or float64 in 0..255.

    Accepts an ndarray or DataFrame of rows or of images, a one-column DataFrame of pixel
    lists (``dataframe_records`` with one list per image) and a one-entry dict of a named
    tensor (``{"inputs": {"pixels": ...}}``). Raises ValueError, which the server answers 400.
    """
    if isinstance(model_input, dict) and len(model_input) == 1:
        model_input = next(iter(model_input.values()))
    X = model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else model_input
    X = np.asarray(X)
    if X.dtype == object and X.ndim == 2 and X.shape[1] == 1 and len(X):
        X = np.stack([np.asarray(row) for row in X[:, 0]])  # one list of pixels per row
    if X.ndim not in (2, 3) or len(X) == 0 or X[0].size != n_features:
        raise ValueError(
            f"expected raw pixels of shape (n, {n_features}) or (n, 28, 28), got {X.shape}"
        )
    X = X.reshape(len(X), n_features)
    if X.dtype == np.uint8:
        return X
    try:
        X = X.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"pixels must be numbers 0..255, got {X.dtype} values") from None
    if not np.isfinite(X).all() or X.min() < 0 or X.max() > 255:
        raise ValueError("pixels must be finite numbers within 0..255")
    return X


def log_pyfunc(
    model_path: str | Path,
    calibration_path: str | Path,
    registered_model: str | None,
    conformal_path: str | Path,
) -> str:
    """Log this file as the active run's model; register it unless ``registered_model`` is
    None. Return the new version ("" when not registered).

    The signature declares the output only (one float64 column per class, the string
    ``label``, the array of strings ``set``): :func:`pixel_rows` checks the input. The
    example input is the mean training image (the scaler's mean), so no data file is read.
    ``code_paths`` ships the package, so the model loads where it is not installed.
    """
    from mnist_softmax.model.model_file import load_model

    model = load_model(model_path)
    classes = [ColSpec("double", str(name)) for name in model.class_names]
    outputs = Schema([*classes, ColSpec("string", LABEL), ColSpec(Array("string"), SET)])
    signature = ModelSignature(inputs=None, outputs=outputs)
    example = np.clip(np.rint(model.scaler.mean), 0, 255).astype(np.uint8)[None, :]
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=__file__,  # model from code: no pickle
        artifacts={
            ARTIFACT_MODEL: str(model_path),
            ARTIFACT_CALIBRATION: str(calibration_path),
            ARTIFACT_CONFORMAL: str(conformal_path),
        },
        code_paths=[str(Path(__file__).parent)],
        signature=signature,
        input_example=example,
        pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in REQUIREMENTS],
        registered_model_name=registered_model,
    )
    return str(info.registered_model_version or "")


mlflow.models.set_model(SoftmaxPyfunc())
