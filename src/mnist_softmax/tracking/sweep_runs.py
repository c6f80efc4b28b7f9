"""MLflow runs of a fast sweep: one parent run, one child run per config, in batched requests.

The fast sweep (:mod:`mnist_softmax.sweeps.fast_sweep`) trains, calibrates and evaluates every
config in one process; this module records the outcome as MLflow expects a sweep to look: a
parent run for the sweep (params: the grid, its size, the ranking metric) and one child per config
(tag ``mlflow.parentRunId``), each with the full flattened config as params, the metrics under
the names the pipeline's own run uses (:func:`run_record.mlflow_values`), the per-epoch
curves at ``step = epoch``, a name saying what the config changes
(``sweep: optimizer.lr=0.05``), and lineage tags: git commit, the data's checksums and DVC
hashes, the environment, the config hash and the one ``dvc exp run``
command that retrains the config as a normal experiment. Each child costs three requests
(create, ``log_batch``, terminate), sent as soon as the config's outcome is known. No model is
logged or registered per child: the command makes one, through the pipeline, when a config is
worth keeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from mnist_softmax.config import Config
from mnist_softmax.errors import PipelineError
from mnist_softmax.tracking import run_record
from mnist_softmax.tracking.run_logging import ensure_store, metric_points
from mnist_softmax.tracking.run_name import run_label
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


class SweepRecorder:
    """The parent run of a sweep, open while its configs arrive; each is logged as it comes.

    Child runs are written the moment a config's outcome is known, not at the end, so a sweep
    whose cluster fails half-way keeps what finished (each config once) and its parent run ends
    FAILED. Use as a context manager: leaving it normally ends the parent FINISHED, through an
    exception FAILED (with the reason as the tag ``error``). An MLflow error becomes one
    :class:`PipelineError` line naming the store.
    """

    def __init__(
        self, base: Config, parent_params: dict[str, str], parent_tags: dict[str, str]
    ) -> None:
        self._uri = resolve_store(base.tracking).uri
        with self._one_line():
            self._experiment_id = ensure_store(base.tracking)
            self._client = MlflowClient(self._uri)
            self._lineage = _lineage_tags(base)
            parent = self._client.create_run(
                self._experiment_id,
                tags={**self._lineage, **parent_tags, TAG_SWEEP_KIND: "parent"},
                run_name="sweep",
            )
            self.parent_id = parent.info.run_id
            params = [Param(k, v) for k, v in parent_params.items()]
            self._client.log_batch(self.parent_id, params=params)
        self.child_ids: dict[str, str] = {}  # config name -> run id

    def __enter__(self) -> SweepRecorder:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        with self._one_line():
            if exc is not None:
                reason = str(exc).splitlines()[0] if str(exc) else kind.__name__
                self._client.set_tag(self.parent_id, "error", reason[: run_record.MAX_PARAM_CHARS])
            self._client.set_terminated(self.parent_id, "FAILED" if exc else "FINISHED")

    def log(self, child: ChildRun) -> str:
        """Log one config as a child run (once: a name already logged is refused)."""
        if child.name in self.child_ids:
            raise PipelineError(f"config {child.name} was already logged in this sweep")
        with self._one_line():
            run_id = _log_child(
                self._client, self._experiment_id, self.parent_id, self._lineage, child
            )
        self.child_ids[child.name] = run_id
        return run_id

    def tag(self, tags: dict[str, str]) -> None:
        """Set tags on the parent run (e.g. what only the end of the sweep knows)."""
        with self._one_line():
            for key, value in tags.items():
                self._client.set_tag(self.parent_id, key, value)

    @contextmanager
    def _one_line(self) -> Iterator[None]:
        try:
            yield
        except MlflowException as exc:
            raise PipelineError(f"MLflow ({self._uri}): {str(exc).splitlines()[0]}") from exc


def _log_child(
    client: MlflowClient, experiment_id: str, parent_id: str, lineage: dict, child: ChildRun
) -> str:
    tags = {
        **lineage,
        **child.tags,
        MLFLOW_PARENT_RUN_ID: parent_id,
        MLFLOW_RUN_NAME: f"sweep: {run_label(child.cfg.to_dict(), 'params') or child.name}",
        TAG_SWEEP_KIND: "child",
        TAG_REPRODUCE: child.command,
        "config_hash": child.cfg.hash(),
    }
    if child.error:
        tags["error"] = child.error[: run_record.MAX_PARAM_CHARS]
    metrics, flags = run_record.mlflow_values(child.metrics, child.cfg.model.output)
    tags |= flags
    run = client.create_run(experiment_id, run_name=tags[MLFLOW_RUN_NAME])
    run_id = run.info.run_id
    params = run_record.flatten_params(child.cfg)
    client.log_batch(
        run_id,
        metrics=metric_points(metrics, child.curves),
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    client.set_terminated(run_id, status="FAILED" if child.error else "FINISHED")
    return run_id


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
