"""MLflow tracking: one complete run per pipeline execution, and the store's housekeeping.

The only module (with :mod:`mnist_softmax.tracking.pyfunc`) that imports mlflow, whose import and
first connection cost seconds. DVC's files are the source of truth; :func:`log_pipeline_run`
mirrors them (see :mod:`mnist_softmax.tracking.run_record` for what goes where) inside one
``with mlflow.start_run()`` block, so any failure, SIGTERM included, ends the run FAILED.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from mnist_softmax.config import Config, TrackingConfig
from mnist_softmax.errors import PipelineError
from mnist_softmax.model.curves import read_curves
from mnist_softmax.redact import redact_mapping, redact_text
from mnist_softmax.tracking import model_card, run_record, runs_view
from mnist_softmax.tracking.pyfunc import log_pyfunc
from mnist_softmax.tracking.run_name import run_label
from mnist_softmax.tracking.store import repo_root, resolve_store

log = logging.getLogger(__name__)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in DVC's log
# MLflow 3.x sends usage telemetry by default: a pipeline must not call out on its own
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

TAG_PID, TAG_HOST = "mnist_softmax.pid", "mnist_softmax.host"  # for end_stale_runs
TAG_VERSION = "registered_model_version"
TAG_NOTE = "mlflow.note.content"  # the run's description in the UI
# set by `mnist-softmax retrain` so it can find the run its pipeline logged
RETRAIN_ID_ENV, TAG_RETRAIN_ID = "MNIST_SOFTMAX_RETRAIN_ID", "mnist_softmax.retrain_id"
VERSION_TAG_METRICS = ("test/acc", "test/nll_calibrated", "test/ece_calibrated", "temperature")
# without it MLflow 3's UI opens the experiment on its GenAI pages (traces), not on the runs
TAG_EXPERIMENT_KIND, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


class RunTerminatedError(PipelineError):
    """SIGTERM arrived while logging; raised so the run ends FAILED, not RUNNING forever."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a terminated process


@dataclass(frozen=True)
class LoggedRun:
    """What :func:`log_pipeline_run` created: the run and the registered model version."""

    run_id: str
    experiment_id: str
    model_version: str
    n_params: int
    n_metrics: int


def ensure_store(tracking: TrackingConfig) -> str:
    """Create (or upgrade) the store and the experiment once; return the experiment id.

    Call it before parallel use (``dvc queue start -j 2``): two processes creating a fresh
    sqlite schema at once can collide. The experiment gets an explicit artifact location so
    artifacts land in ``<repo>/mlflow/artifacts``, not in whatever cwd DVC ran the stage from,
    and tags that make MLflow's UI open it as model training, with the runs table of
    :mod:`~mnist_softmax.tracking.runs_view`.
    """
    store = resolve_store(tracking)
    if store.artifact_location:
        Path(store.artifact_location).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(store.uri)
    client = MlflowClient(store.uri)
    experiment = client.get_experiment_by_name(tracking.experiment_name)
    wanted = {TAG_EXPERIMENT_KIND: EXPERIMENT_KIND, runs_view.TAG: runs_view.view_state()}
    if experiment is not None:
        for key, value in wanted.items():
            if experiment.tags.get(key) != value:  # stores made before
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    location = Path(store.artifact_location).as_uri() if store.artifact_location else None
    try:
        return client.create_experiment(
            tracking.experiment_name, artifact_location=location, tags=wanted
        )
    except MlflowException:  # a parallel process created it first
        experiment = client.get_experiment_by_name(tracking.experiment_name)
        if experiment is None:
            raise
        return experiment.experiment_id


def log_pipeline_run(cfg: Config) -> LoggedRun:
    """Log params, metrics, curves, artefacts, tags, dataset and model as ONE run.

    Reads the files named in ``cfg.paths`` (relative to the cwd, where DVC runs the stage) and
    registers the model as a new version of ``cfg.tracking.registered_model``. An MLflow
    error becomes one :class:`PipelineError` line (the run, if started, ends FAILED first).
    """
    try:
        return _log_pipeline_run(cfg)
    except MlflowException as exc:
        uri = resolve_store(cfg.tracking).uri
        raise PipelineError(redact_text(f"MLflow ({uri}): {str(exc).splitlines()[0]}")) from exc


def _log_pipeline_run(cfg: Config) -> LoggedRun:
    experiment_id = ensure_store(cfg.tracking)
    exp_name = os.environ.get("DVC_EXP_NAME") or ""
    freeze = run_record.environment_freeze()
    tags = {
        **run_record.git_tags(),
        **run_record.dvc_lock_tags(),
        **run_record.data_tags(cfg),
        **run_record.batch_tags(cfg.paths),
        **run_record.environment_tags(freeze, repo_root()),
        "dvc.exp_name": exp_name,
        "config_hash": cfg.hash(),
        TAG_PID: str(os.getpid()),
        TAG_RETRAIN_ID: os.environ.get(RETRAIN_ID_ENV, ""),
        TAG_HOST: socket.gethostname(),
    }
    params = run_record.flatten_params(cfg)
    merged = run_record.read_final_metrics(cfg.paths)  # the pipeline's names
    metrics, flags = run_record.mlflow_values(merged, cfg.model.output)
    data_report = run_record.read_report(cfg.paths.data_report)
    per_class = run_record.read_report(cfg.paths.per_class)["per_class"]
    tags |= flags
    tags[TAG_NOTE] = model_card.run_description(merged, exp_name)
    tags = redact_mapping(tags)
    name = pipeline_run_name(cfg, exp_name)
    with (
        _sigterm_raises(),
        mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run,
    ):
        run_id = run.info.run_id
        _log_values(run_id, params, metrics, cfg.paths.train_curves)
        for folder, files in run_record.artifact_files(cfg.paths).items():
            for path in files:
                _log_artifact(path, folder)
        mlflow.log_text(freeze, "environment/pip-freeze.txt")
        counts = data_report.get("counts", {})
        for table_name, table in model_card.tables(
            per_class, counts, cfg.paths.confusion, cfg.paths.conformal_report
        ).items():
            mlflow.log_table(table, f"tables/{table_name}.json")
        _log_input_once(_dataset(cfg), run_record.split_sizes(data_report))
        version = _log_model(cfg, merged)
        mlflow.set_tag(TAG_VERSION, version)
    return LoggedRun(run_id, experiment_id, version, len(params), len(metrics))


def pipeline_run_name(cfg: Config, exp_name: str) -> str | None:
    """The run's name: what its config changes in ``params/`` (``default``, ``optimizer.lr=0.3``),
    prefixed ``retrain:`` under the retrain job; the DVC experiment name without ``params/``.
    """
    label = run_label(cfg.to_dict(), Path("params")) or exp_name or None
    return f"retrain: {label}" if label and os.environ.get(RETRAIN_ID_ENV) else label


def _log_artifact(path: Path, folder: str) -> None:
    """Log one file; YAML (params.yaml, dvc.lock: they hold tracking.uri) with secrets masked."""
    if path.suffix in (".yaml", ".lock"):
        mlflow.log_text(redact_text(path.read_text()), f"{folder}/{path.name}")
    else:
        mlflow.log_artifact(str(path), artifact_path=folder)


def _log_values(run_id: str, params: dict, metrics: dict, curves_path: str) -> None:
    """Send params, final metrics and every curve point in batched requests."""
    points = metric_points(metrics, read_curves(curves_path))
    # MlflowClient.log_batch splits into requests of <= 100 params and <= 1000 metrics
    MlflowClient().log_batch(
        run_id, metrics=points, params=[Param(k, v) for k, v in params.items()]
    )


def metric_points(metrics: dict[str, float], curves: pd.DataFrame) -> list[Metric]:
    """Final metrics at step 0, and every finite curve point at ``step = epoch`` under its
    MLflow name (:func:`run_record.curve_name`); NaN cells (L-BFGS has no learning rate) are
    skipped."""
    now = int(time.time() * 1000)
    points = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    if curves.empty:
        return points
    steps = curves["epoch"].astype(int).tolist()
    for column in curves.columns.drop("epoch"):
        points += [
            Metric(run_record.curve_name(column), float(v), now, step)
            for step, v in zip(steps, curves[column].astype(float), strict=True)
            if np.isfinite(v)
        ]
    return points


def _log_input_once(dataset: MetaDataset, tags: dict[str, str], attempts: int = 3) -> None:
    """Log the dataset input, surviving parallel log stages that insert it at the same time.

    MLflow checks for the dataset and then inserts it; two queued experiments doing that at
    once make the slower one fail on the unique key (seen on PostgreSQL). The row exists by
    then, so trying again links to it. ``tags``: the split sizes, shown with the dataset.
    """
    for attempt in range(1, attempts + 1):
        try:
            mlflow.log_input(dataset, context="training", tags=tags)
            return
        except MlflowException as exc:
            duplicate = "unique" in str(exc).lower() or "duplicate" in str(exc).lower()
            if not duplicate or attempt == attempts:
                raise
            log.info("dataset inserted concurrently by another run; linking to it")
            time.sleep(0.5 * attempt)


def _dataset(cfg: Config) -> MetaDataset:
    """Describe the data by name, source and checksum (the arrays stay in DVC's cache)."""
    n_pixels = int(np.prod(cfg.data.image_shape))
    schema = Schema(
        [
            TensorSpec(np.dtype(np.uint8), (-1, n_pixels), "X"),
            TensorSpec(np.dtype(np.int64), (-1,), "y"),
        ]
    )
    source = HTTPDatasetSource(cfg.data.mirrors[0])
    return MetaDataset(
        source, name=cfg.data.name, digest=run_record.data_digest(cfg), schema=schema
    )


def _log_model(cfg: Config, metrics: dict[str, float]) -> str:
    """Log the pyfunc; unless ``tracking.register`` is false (sweeps), register it as a new
    version with a model card and the tags the retrain job compares. Returns the version
    ("" when not registered).
    """
    name = cfg.tracking.registered_model
    if not cfg.tracking.register:
        log_pyfunc(cfg.paths.model, cfg.paths.calibration, None, cfg.paths.conformal)
        return ""
    version = log_pyfunc(cfg.paths.model, cfg.paths.calibration, name, cfg.paths.conformal)
    client = MlflowClient()
    client.update_registered_model(name, description=model_card.MODEL_DESCRIPTION)
    card = model_card.version_description(cfg, metrics, run_record.data_tags(cfg))
    client.update_model_version(name, version, description=card)
    wanted = {*VERSION_TAG_METRICS, *cfg.retrain.higher_is_better, *cfg.retrain.lower_is_better}
    for key in sorted(wanted & metrics.keys()):
        client.set_model_version_tag(name, version, key, str(metrics[key]))
    client.set_model_version_tag(name, version, "config_hash", cfg.hash())
    return version


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception inside the block, so ``start_run`` ends the run FAILED."""

    def handler(signum: int, frame: object) -> None:
        raise RunTerminatedError("terminated by SIGTERM while logging to MLflow")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def end_stale_runs(max_age_s: float, tracking: TrackingConfig) -> list[str]:
    """Mark RUNNING runs KILLED when older than ``max_age_s`` or their process is gone.

    A run is only RUNNING while its log stage lives; a SIGKILL or a power cut leaves it so
    forever. The pid and host tags tell a dead local process at once; age catches the rest.
    Returns the ids of the runs it ended.
    """
    client = MlflowClient(resolve_store(tracking).uri)
    experiment = client.get_experiment_by_name(tracking.experiment_name)
    if experiment is None:
        return []
    now = int(time.time() * 1000)
    runs = client.search_runs(
        [experiment.experiment_id], "attributes.status = 'RUNNING'", max_results=1000
    )
    ended = []
    for run in runs:
        too_old = (now - run.info.start_time) / 1000 > max_age_s
        if too_old or _process_gone(run.data.tags):
            client.set_tag(run.info.run_id, "end_reason", "stale" if too_old else "process gone")
            client.set_terminated(run.info.run_id, status="KILLED", end_time=now)
            ended.append(run.info.run_id)
    log.info("ended %d stale run(s)", len(ended))
    return ended


def _process_gone(tags: dict[str, str]) -> bool:
    """True when the run's recorded process ran on this host and no longer exists."""
    if tags.get(TAG_HOST) != socket.gethostname() or not tags.get(TAG_PID, "").isdigit():
        return False
    try:
        os.kill(int(tags[TAG_PID]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def search_runs(n: int, tracking: TrackingConfig) -> pd.DataFrame:
    """Return the last ``n`` runs of the experiment, newest first (empty if there are none)."""
    store = resolve_store(tracking)
    local_db = store.uri.removeprefix("sqlite:///")
    if store.uri.startswith("sqlite:///") and not Path(local_db).is_file():
        return pd.DataFrame()  # reading must not create an empty store
    mlflow.set_tracking_uri(store.uri)
    if mlflow.get_experiment_by_name(tracking.experiment_name) is None:
        return pd.DataFrame()
    return mlflow.search_runs(
        experiment_names=[tracking.experiment_name],
        max_results=n,
        order_by=["attributes.start_time DESC"],
    )


# `python -m mnist_softmax.tracking.run_logging`: create the store up front
if __name__ == "__main__":
    from mnist_softmax.config import load_or_compose

    logging.basicConfig(level=logging.INFO, format="[tracking] %(message)s")
    config = load_or_compose().tracking
    log.info("experiment id %s at %s", ensure_store(config), resolve_store(config).uri)
