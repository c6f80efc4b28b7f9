"""Which trained model a command serves: the one asked for, else the registry's best, else the file.

With no explicit choice the order is: the registered model's ``champion`` alias, else its newest
version, else the workspace's ``models/model.npz`` with the ``models/calibration.json`` and
``models/conformal.json`` beside it. An explicit choice is a file path (a ``model.npz``) or an
MLflow model URI (``models:/mnist-softmax@champion``, ``models:/mnist-softmax/3``,
``runs:/<id>/model``). A registered model is loaded through its pyfunc, exactly as the retrain
job scores it.

mlflow is imported only when the registry is really asked (it costs seconds): never for a file,
and not when the local sqlite store does not exist yet (reading must not create one).
``predict`` and ``explore`` both choose their model here; ``predict`` then runs it through the
very :class:`~mnist_softmax.tracking.pyfunc.SoftmaxPyfunc` that MLflow serves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mnist_softmax.config import PathsConfig, TrackingConfig
from mnist_softmax.errors import DataError
from mnist_softmax.evaluation.conformal import Conformal
from mnist_softmax.evaluation.conformal_file import load_conformal
from mnist_softmax.evaluation.temperature import load_temperature
from mnist_softmax.model.model_file import SoftmaxModel, load_model
from mnist_softmax.tracking.store import resolve_store

if TYPE_CHECKING:  # pyfunc imports mlflow (seconds): only load() needs it at run time
    from mnist_softmax.tracking.pyfunc import SoftmaxPyfunc

log = logging.getLogger(__name__)

_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


@dataclass(frozen=True)
class ModelSource:
    """A loaded model, its fitted temperature, and where it came from (for people to read).

    ``conformal`` makes its prediction sets; None for a bare model file (no calibration beside
    it) or a version registered before sets existed: then no set is shown, never an empty one.
    """

    model: SoftmaxModel
    temperature: float
    source: str
    conformal: Conformal | None = None


def load_model_source(
    spec: str | None, tracking: TrackingConfig, paths: PathsConfig
) -> ModelSource:
    """Load the model named by ``spec`` (a path or MLflow URI), or the default one (see above).

    Raises DataError (one line) when the named model cannot be found or read.
    """
    if spec and (spec.startswith(_URI_SCHEMES) or Path(spec).is_dir()):  # URI or model folder
        return _load_registered(spec, tracking)
    if spec:
        folder = Path(spec).parent
        return _load_file(
            Path(spec), folder / Path(paths.calibration).name, folder / Path(paths.conformal).name
        )
    uri = _default_registered_uri(tracking)
    if uri is not None:
        return _load_registered(uri, tracking)
    return _load_file(Path(paths.model), Path(paths.calibration), Path(paths.conformal))


def _load_file(model_path: Path, calibration_path: Path, conformal_path: Path) -> ModelSource:
    """Load a ``model.npz``; its temperature is T = 1 when no calibration file lies beside it.

    Beside a calibration file (a pipeline's output) the conformal file must be there and
    sound (DataError otherwise); a bare model file has neither, and no prediction sets.
    """
    if not model_path.is_file():
        raise DataError(f"{model_path} not found: run `make run` first, or pass --model")
    model = load_model(model_path)
    conformal = None
    if calibration_path.is_file():
        temperature = load_temperature(calibration_path)
        conformal = load_conformal(conformal_path, len(model.class_names))
    else:
        log.warning("%s not found: using T = 1 (uncalibrated), no prediction sets",
                    calibration_path)  # fmt: skip
        temperature = 1.0
    return ModelSource(model, temperature, str(model_path), conformal)


def _default_registered_uri(tracking: TrackingConfig) -> str | None:
    """Return the URI of the champion, else of the newest version; None without either."""
    store = resolve_store(tracking)
    if (
        store.uri.startswith("sqlite:///")
        and not Path(store.uri.removeprefix("sqlite:///")).is_file()
    ):
        return None  # no local store yet: nothing registered, and reading must not create it
    from mnist_softmax.tracking.registry import CHAMPION, alias_version, client_for, latest_version

    client = client_for(tracking)
    name = tracking.registered_model
    try:
        if alias_version(client, name, CHAMPION) is not None:
            return f"models:/{name}@{CHAMPION}"
        version = latest_version(client, name)
    except Exception as exc:  # a server that is down: say so, then serve the workspace file
        log.warning("model registry unreachable (%s): using the workspace model file", exc)
        return None
    return None if version is None else f"models:/{name}/{version}"


def _load_registered(uri: str, tracking: TrackingConfig) -> ModelSource:
    """Load a logged pyfunc and unwrap the project's model and temperature from it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(resolve_store(tracking).uri)
    try:
        served = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except (MlflowException, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot load model {uri}: {first_line}") from None
    if not (hasattr(served, "model") and hasattr(served, "temperature")):
        raise DataError(f"{uri} is not an mnist-softmax model (no model and temperature inside)")
    conformal = getattr(served, "conformal", None)
    if conformal is None:
        log.warning("%s was registered before prediction sets: no set is shown", uri)
    return ModelSource(served.model, float(served.temperature), uri, conformal)


@dataclass(frozen=True)
class LoadedModel:
    """A chosen model wrapped in the pyfunc class MLflow serves, so predict = serving."""

    source: str
    python_model: SoftmaxPyfunc

    def predict(self, pixels: np.ndarray) -> pd.DataFrame:
        """Return one row per image: a probability per class and the predicted ``label``."""
        return self.python_model.predict(None, pixels)


def load(
    spec: str | None, tracking: TrackingConfig, paths: PathsConfig, temperature: float | None
) -> LoadedModel:
    """Choose and load a model as :func:`load_model_source` does, inside a SoftmaxPyfunc.

    ``temperature`` replaces the calibrated T for this process only (None keeps it).
    """
    from mnist_softmax.tracking.pyfunc import SoftmaxPyfunc

    source = load_model_source(spec, tracking, paths)
    pyfunc = SoftmaxPyfunc()
    pyfunc.model = source.model
    pyfunc.temperature = source.temperature if temperature is None else float(temperature)
    # the sets' threshold was fitted for the calibrated T: with another T they lose the guarantee
    pyfunc.conformal = source.conformal if temperature is None else None
    return LoadedModel(source.source, pyfunc)
