"""The registered model as MLflow sees it: calibrated probabilities from raw pixels.

MLflow logs this file as "model from code" (``mlflow.models.set_model`` at the bottom): the
weights travel as the plain ``model.npz`` and ``calibration.json`` artefacts, never as a pickle,
and the class is rebuilt from this source when ``mlflow.pyfunc.load_model`` runs. Prediction
is :meth:`SoftmaxModel.predict_proba`, the scaler and softmax that evaluate uses, so the served
probabilities equal the evaluated ones bit for bit.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec

ARTIFACT_MODEL = "model"  # key of models/model.npz in the pyfunc's artifacts
ARTIFACT_CALIBRATION = "calibration"  # key of models/calibration.json
# what predict needs, pinned to this environment: mlflow would otherwise spend ~8 s inferring it
REQUIREMENTS = ("mlflow", "numpy", "pandas", "scipy")


class SoftmaxPyfunc(mlflow.pyfunc.PythonModel):
    """Scaler, softmax regression and temperature in one ``predict``.

    Input: raw uint8 pixels, ndarray or DataFrame of shape (n_samples, 784); the class itself
    also takes images of shape (n_samples, 28, 28) (MLflow's signature check admits the
    flattened form only). Output: DataFrame of shape (n_samples, n_classes), one float64
    probability column per class name, rows summing to 1.
    """

    def load_context(self, context: Any) -> None:
        """Load the model and its temperature from the logged artefact files."""
        # imported here, once MLflow has put the logged code_paths copy on sys.path
        from mnist_softmax.evaluation.temperature import load_temperature
        from mnist_softmax.model.model_file import load_model

        self.model = load_model(context.artifacts[ARTIFACT_MODEL])
        self.temperature = load_temperature(context.artifacts[ARTIFACT_CALIBRATION])

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict | None = None
    ) -> pd.DataFrame:
        """Return calibrated class probabilities softmax(logits / T) for raw pixel rows.

        ``model_input`` is an ndarray (MLflow's tensor signature turns a DataFrame into one; the
        hint must be one MLflow infers no schema from, or it warns), a DataFrame when the class
        is called directly.
        """
        X = model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else model_input
        X = np.asarray(X)
        n_features = self.model.W.shape[0]
        if X.ndim not in (2, 3) or X[0].size != n_features:
            raise ValueError(
                f"expected raw pixels of shape (n, {n_features}) or (n, *image_shape), "
                f"got {X.shape}"
            )
        proba = self.model.predict_proba(X, self.temperature)
        return pd.DataFrame(proba, columns=[str(c) for c in self.model.class_names])


def log_pyfunc(model_path: str | Path, calibration_path: str | Path, registered_model: str) -> str:
    """Log this file as the active run's model and register it; return the new version.

    The signature is a uint8 tensor of shape (-1, n_features) in, one float64 column per class
    out; the example input is the mean training image (the scaler's mean), so no data file is
    read. ``code_paths`` ships the package, so the model loads where it is not installed.
    """
    from mnist_softmax.model.model_file import load_model

    model = load_model(model_path)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, model.W.shape[0]))]),
        outputs=Schema([ColSpec("double", str(name)) for name in model.class_names]),
    )
    example = np.clip(np.rint(model.scaler.mean), 0, 255).astype(np.uint8)[None, :]
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=__file__,  # model from code: no pickle
        artifacts={ARTIFACT_MODEL: str(model_path), ARTIFACT_CALIBRATION: str(calibration_path)},
        code_paths=[str(Path(__file__).parent)],
        signature=signature,
        input_example=example,
        pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in REQUIREMENTS],
        registered_model_name=registered_model,
    )
    return str(info.registered_model_version)


mlflow.models.set_model(SoftmaxPyfunc())
