"""Which model ``mnist-softmax predict`` uses, loaded through the pyfunc that serving runs.

Default: ``models:/<name>@champion`` when the store has that alias, else the newest registered
version, else the workspace's ``models/model.npz``. A model file is wrapped in the very
:class:`~mnist_softmax.tracking.pyfunc.SoftmaxPyfunc` that MLflow loads, so a file and a
registered version give the same numbers for the same pixels.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from mnist_softmax.atomic import write_json
from mnist_softmax.config import Config
from mnist_softmax.errors import PipelineError
from mnist_softmax.tracking.store import resolve_store

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready to predict: where it came from and the pyfunc that predicts."""

    source: str
    pyfunc: object  # mlflow.pyfunc.PyFuncModel, or SoftmaxPyfunc for a plain model file

    @property
    def python_model(self):
        """The SoftmaxPyfunc instance inside (for its class names and temperature)."""
        unwrap = getattr(self.pyfunc, "unwrap_python_model", None)
        return unwrap() if unwrap else self.pyfunc

    def predict(self, pixels: np.ndarray) -> pd.DataFrame:
        """Return one row per image: a probability per class and the predicted ``label``."""
        if hasattr(self.pyfunc, "unwrap_python_model"):  # MLflow's path: the signature check
            return self.pyfunc.predict(pixels)
        return self.pyfunc.predict(None, pixels)


def default_model_uri(cfg: Config) -> str:
    """Return champion > newest version > the workspace's model file (its path)."""
    store = resolve_store(cfg.tracking)
    if store.uri.startswith("sqlite:///") and not Path(store.uri[10:]).is_file():
        return cfg.paths.model  # no local store: do not create one by asking
    from mnist_softmax.tracking import registry

    name = cfg.tracking.registered_model
    client = registry.client_for(cfg.tracking)
    champion = registry.alias_version(client, name)
    if champion is not None:
        return f"models:/{name}@{registry.CHAMPION}"
    try:
        newest = registry.latest_version(client, name)
    except Exception as exc:  # a server that is down: say so, then use the file
        log.warning("model registry unreachable (%s): using %s", exc, cfg.paths.model)
        return cfg.paths.model
    return f"models:/{name}/{newest}" if newest else cfg.paths.model


def load(source: str, cfg: Config, temperature: float | None = None) -> LoadedModel:
    """Load ``source`` (an MLflow model URI, an MLflow model folder or a model ``.npz``).

    ``temperature`` replaces the calibrated T for this process only.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from mnist_softmax.tracking.pyfunc import ARTIFACT_CALIBRATION, ARTIFACT_MODEL, SoftmaxPyfunc

    path = Path(source)
    if path.is_file():
        pyfunc = SoftmaxPyfunc()
        with tempfile.TemporaryDirectory() as scratch:
            calibration = _calibration_beside(path, cfg, Path(scratch), temperature)
            artifacts = {ARTIFACT_MODEL: str(path), ARTIFACT_CALIBRATION: str(calibration)}
            pyfunc.load_context(SimpleNamespace(artifacts=artifacts))
        loaded = LoadedModel(str(path), pyfunc)
    else:
        mlflow.set_tracking_uri(resolve_store(cfg.tracking).uri)
        try:
            loaded = LoadedModel(source, mlflow.pyfunc.load_model(source))
        except (MlflowException, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PipelineError(f"cannot load model {source}: {first}") from None
    if temperature is not None:
        loaded.python_model.temperature = float(temperature)
    return loaded


def _calibration_beside(
    model_path: Path, cfg: Config, scratch: Path, temperature: float | None
) -> Path:
    """Return the calibration file of a model file: the workspace's, or one beside it.

    A model file without one gets a scratch file holding ``temperature`` (1: uncalibrated),
    so it still loads through the pyfunc's own ``load_context``.
    """
    workspace = Path(cfg.paths.calibration)
    if model_path.resolve() == Path(cfg.paths.model).resolve() and workspace.is_file():
        return workspace
    beside = model_path.with_name(workspace.name)
    if beside.is_file():
        return beside
    if temperature is None:
        log.warning("no %s beside %s: uncalibrated (temperature 1)", workspace.name, model_path)
    write_json(scratch / workspace.name, {"temperature": temperature or 1.0})
    return scratch / workspace.name
