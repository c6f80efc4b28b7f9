"""MLflow runs of a fast sweep: one parent run, one child run per config, in batched requests.

The fast sweep (:mod:`mnist_softmax.ops.fast_sweep`) trains, calibrates and evaluates every
config in one process; this module records the outcome as MLflow expects a sweep to look: a
parent run for the sweep (params: the grid, its size, the ranking metric) and one child per config
(tag ``mlflow.parentRunId``), each with the full flattened config as params, the metrics under
the names the pipeline's own run uses (:func:`run_record.merge_final_metrics`), the per-epoch
curves as ``curve/<name>`` at ``step = epoch``, and lineage tags: git commit, the data's
checksums and DVC hashes, the environment, the config hash and the one ``dvc exp run``
command that retrains the config as a normal experiment. Each child costs three requests
(create, ``log_batch``, terminate). No model is logged or registered per child: the command
makes one, through the pipeline, when a config is worth keeping.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from mnist_softmax.config import Config
from mnist_softmax.errors import PipelineError
from mnist_softmax.tracking import run_record
from mnist_softmax.tracking.run_logging import ensure_store
from mnist_softmax.tracking.store import repo_root, resolve_store

TAG_SWEEP_KIND = "mnist_softmax.sweep"  # "parent" or "child": how compare/UI filters tell them
TAG_REPRODUCE = "sweep.reproduce"  # the dvc exp run command of a child


@dataclass(frozen=True)
class ChildRun:
    """One config of the sweep, as it goes into MLflow.

    curves : one row per epoch, columns ``epoch`` and the curve names (empty if training failed)
    error : the reason the config failed (the run ends FAILED), or "" when it succeeded
    """

    name: str
    cfg: Config
    metrics: dict[str, float]
    curves: pd.DataFrame
    command: str
    error: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedSweep:
    """The parent run's id and each child's run id, in the order of the children."""

    parent_id: str
    child_ids: tuple[str, ...]


def log_sweep(
    base: Config, children: Sequence[ChildRun], parent_params: dict[str, str]
) -> LoggedSweep:
    """Log the parent run and every child; an MLflow error becomes one PipelineError line."""
    try:
        return _log_sweep(base, children, parent_params)
    except MlflowException as exc:
        uri = resolve_store(base.tracking).uri
        raise PipelineError(f"MLflow ({uri}): {str(exc).splitlines()[0]}") from exc


def _log_sweep(
    base: Config, children: Sequence[ChildRun], parent_params: dict[str, str]
) -> LoggedSweep:
    experiment_id = ensure_store(base.tracking)
    client = MlflowClient(resolve_store(base.tracking).uri)
    lineage = _lineage_tags(base)
    parent = client.create_run(
        experiment_id, tags={**lineage, TAG_SWEEP_KIND: "parent"}, run_name="sweep"
    )
    parent_id = parent.info.run_id
    child_ids = []
    try:
        client.log_batch(parent_id, params=[Param(k, v) for k, v in parent_params.items()])
        for child in children:
            child_ids.append(_log_child(client, experiment_id, parent_id, lineage, child))
    except BaseException:
        client.set_terminated(parent_id, status="FAILED")
        raise
    client.set_terminated(parent_id)
    return LoggedSweep(parent_id, tuple(child_ids))


def _log_child(
    client: MlflowClient, experiment_id: str, parent_id: str, lineage: dict, child: ChildRun
) -> str:
    tags = {
        **lineage,
        **child.tags,
        MLFLOW_PARENT_RUN_ID: parent_id,
        MLFLOW_RUN_NAME: child.name,
        TAG_SWEEP_KIND: "child",
        TAG_REPRODUCE: child.command,
        "config_hash": child.cfg.hash(),
    }
    if child.error:
        tags["error"] = child.error[: run_record.MAX_PARAM_CHARS]
    run = client.create_run(experiment_id, run_name=child.name)
    run_id = run.info.run_id
    params = run_record.flatten_params(child.cfg)
    client.log_batch(
        run_id,
        metrics=_metric_points(child.metrics, child.curves),
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    client.set_terminated(run_id, status="FAILED" if child.error else "FINISHED")
    return run_id


def _metric_points(metrics: dict[str, float], curves: pd.DataFrame) -> list[Metric]:
    """Final metrics at step 0, and every finite curve point at ``step = epoch``."""
    now = int(time.time() * 1000)
    points = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    if curves.empty:
        return points
    steps = curves["epoch"].astype(int).tolist()
    for column in curves.columns.drop("epoch"):
        values = curves[column].astype(float)
        points += [
            Metric(f"{run_record.CURVE_PREFIX}{column}", float(v), now, step)
            for step, v in zip(steps, values, strict=True)
            if np.isfinite(v)
        ]
    return points


def _lineage_tags(base: Config) -> dict[str, str]:
    """Tags every run of the sweep shares: code, data and environment it ran with.

    Only the dvc.lock entries of the stages whose outputs the sweep reads (fetch, preprocess);
    the workspace's train/evaluate outputs belong to another config.
    """
    freeze = run_record.environment_freeze()
    data_stages = ("dvc.fetch.", "dvc.preprocess.")
    tags = {
        **run_record.git_tags(),
        **{k: v for k, v in run_record.dvc_lock_tags().items() if k.startswith(data_stages)},
        **run_record.data_tags(base),
        **run_record.environment_tags(freeze, repo_root()),
    }
    if tags["git.commit"] != "unknown":
        tags["mlflow.source.git.commit"] = tags["git.commit"]
    return tags
