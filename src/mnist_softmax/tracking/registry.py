"""The model registry as the retrain job sees it: aliases, version lookup, scoring, decisions.

Aliases (``champion``, ``previous``) replace MLflow's deprecated stages. MLflow has no
compare-and-set for aliases, so :func:`move_champion` re-reads the alias immediately before
moving it: a promotion made by someone else during a (minutes-long) retrain is detected and
left alone; only the milliseconds between the read and the write remain unguarded.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_softmax.config import RETRAIN_METRICS, Config, TrackingConfig
from mnist_softmax.data.splits import Split
from mnist_softmax.errors import PipelineError
from mnist_softmax.evaluation.batch_scores import SCORE_NAMES, calibrated_scores
from mnist_softmax.model.outputs import probabilities
from mnist_softmax.redact import redact_text
from mnist_softmax.tracking.run_logging import TAG_RETRAIN_ID
from mnist_softmax.tracking.store import resolve_store

log = logging.getLogger(__name__)

CHAMPION, PREVIOUS = "champion", "previous"
TAG_DECISION = "retrain.decision"


class ChampionMovedError(PipelineError):
    """The champion alias moved while this job ran: someone else promoted; do not overwrite."""

    exit_code = 6

    def __init__(self, message: str, current: str | None) -> None:
        super().__init__(message)
        self.current = current  # who holds the alias now, for the job's report


@contextlib.contextmanager
def tracking_errors(tracking: TrackingConfig) -> Iterator[None]:
    """Turn any MLflow failure (server down, auth, schema) into one line naming the store."""
    try:
        yield
    except MlflowException as exc:
        uri = redact_text(resolve_store(tracking).uri)
        first = redact_text(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        raise PipelineError(
            f"MLflow at {uri} failed: {first[:300]} (is the tracking server up and the URI "
            "right? see tracking.uri / $MLFLOW_TRACKING_URI)"
        ) from None


def client_for(tracking: TrackingConfig) -> MlflowClient:
    uri = resolve_store(tracking).uri
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def alias_version(client: MlflowClient, name: str, alias: str = CHAMPION) -> str | None:
    """Return the version holding ``alias``, or None (no alias, or no registered model yet).

    Only "the model does not exist" means no champion: any other MLflow error (server down,
    permission denied) propagates, since reading it as "no champion" would promote by default.
    """
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = aliases.get(alias)
    return None if version is None else str(version)


def require_version(client: MlflowClient, name: str, version: str) -> None:
    """Raise PipelineError unless ``name`` has a registered ``version``."""
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise PipelineError(f"{name} has no version {version}") from None


def latest_version(client: MlflowClient, name: str) -> str | None:
    """Return the newest registered version of ``name``, or None when there is none."""
    versions = client.search_model_versions(f"name = '{name}'")
    return str(max(int(v.version) for v in versions)) if versions else None


def workspace_version(client: MlflowClient, name: str, lock_tags: dict[str, str]) -> str | None:
    """Return the newest version whose run logged exactly the workspace's output hashes.

    ``lock_tags`` are the workspace's ``dvc.<stage>.<out>: md5`` (from its dvc.lock), which
    the log stage also stores as run tags. The newest registered version may come from a
    sweep experiment the workspace never built; only a version with the same hashes is the
    model of this workspace. None when no version matches (or dvc.lock is missing).
    """
    if not lock_tags:
        return None
    versions = client.search_model_versions(f"name = '{name}'")
    for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if not version.run_id:
            continue
        tags = client.get_run(version.run_id).data.tags
        if all(tags.get(key) == value for key, value in lock_tags.items()):
            return str(version.version)
    return None


def run_of_retrain(client: MlflowClient, experiment: str, retrain_id: str):
    """Return the run the log stage made for this retrain job, or None when it logged none."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id], f"tags.`{TAG_RETRAIN_ID}` = '{retrain_id}'", max_results=1
    )
    return runs[0] if runs else None


def trained_batches(client: MlflowClient, name: str, version: str) -> list[str]:
    """The accepted batches a version was trained on, from its run's ``data.batches`` tag."""
    run_id = client.get_model_version(name, version).run_id
    tag = client.get_run(run_id).data.tags.get("data.batches", "") if run_id else ""
    return [batch for batch in tag.split(",") if batch]


def load_served(name: str, version: str):
    """The version's python model as served: its own ``model.npz`` and temperature."""
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()


def confidences(served, X: np.ndarray) -> np.ndarray:
    """The served model's calibrated top probability per image (the drift report's histogram)."""
    logits = served.model.logits(X).astype(np.float64)
    return probabilities(logits, served.model.output, served.temperature).max(axis=1)


def score_version(name: str, version: str, test: Split, cfg: Config) -> dict[str, float]:
    """Score a registered version on ``test`` as the evaluate stage scores its model."""
    return score_served(load_served(name, version), test, cfg)


def score_served(served, test: Split, cfg: Config) -> dict[str, float]:
    """Score a served model on ``test`` as the evaluate stage scores its model.

    The version's pyfunc is loaded as served (its own ``model.npz`` and temperature), then
    scored by :func:`mnist_softmax.evaluation.batch_scores.calibrated_scores`, on the same
    formulas that wrote ``reports/metrics.json``: a freshly logged model scores what evaluate
    said. Returns the ``RETRAIN_METRICS`` names (``test/acc``...), non-finite values left out.
    """
    names = {metric: metric.removeprefix("test/") for metric in RETRAIN_METRICS}
    if not set(names.values()) <= set(SCORE_NAMES):  # the names the rule is validated against
        raise PipelineError(
            f"RETRAIN_METRICS {RETRAIN_METRICS} not all in {SCORE_NAMES}: a code bug"
        )
    ev = cfg.evaluation
    scores = calibrated_scores(served.model, served.temperature, test, ev.n_bins, ev.binning)
    return {metric: scores[name] for metric, name in names.items() if name in scores}


# decisions of a retrain job that never judged its version: it can never become champion
UNJUDGED = ("abandoned", "interrupted", "failed")
TAG_DECISION = "retrain.decision"


def abandon_versions(
    client: MlflowClient, name: str, experiment: str, retrain_id: str
) -> list[str]:
    """Tag the versions a dead retrain job registered ``abandoned``; return them.

    The job died before it decided about them (the log stage may even have registered one in
    the moment the job was killed), so nobody vouches for them.
    """
    run = run_of_retrain(client, experiment, retrain_id)
    if run is None:
        return []
    found = versions_of_run(client, name, run.info.run_id)
    for version in found:
        client.set_model_version_tag(name, version, TAG_DECISION, "abandoned")
    client.set_tag(run.info.run_id, TAG_DECISION, "abandoned")
    return found


def versions_of_run(client: MlflowClient, name: str, run_id: str) -> list[str]:
    """The versions of ``name`` registered from ``run_id``: found from the registry, since the
    run's own version tag is written after registering and a killed log stage may lack it."""
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    return [str(v.version) for v in versions if v.name == name]


def move_champion(client: MlflowClient, name: str, new: str, expected: str | None) -> None:
    """Point ``champion`` at ``new`` (and ``previous`` at the old one) if nobody moved it.

    A version whose retrain job never judged it (:data:`UNJUDGED`) is refused.
    """
    decided = client.get_model_version(name, new).tags.get(TAG_DECISION)
    if decided in UNJUDGED:
        raise PipelineError(
            f"v{new} of {name} was registered by a retrain job that never judged it "
            f"({TAG_DECISION}={decided}): it cannot become champion"
        )
    current = alias_version(client, name)
    if current == new == expected:
        log.info("v%s already holds the champion alias; nothing moved", new)
        return
    if current != expected:
        raise ChampionMovedError(
            f"champion of {name} moved from v{expected} to v{current} during this job: "
            f"not overwritten; v{new} stays a candidate (promote it by hand if wanted)",
            current,
        )
    if expected is not None:  # keep the old champion reachable for a rollback
        client.set_registered_model_alias(name, PREVIOUS, expected)
    client.set_registered_model_alias(name, CHAMPION, new)
    log.info("champion of %s: v%s -> v%s", name, expected, new)
