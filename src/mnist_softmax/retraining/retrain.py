"""``mnist-softmax retrain``: the unattended job that must never ship a worse model.

Order matters: lock -> end stale runs -> verify upstream data -> ingest the inbox -> watch the
champion on batches it never saw (monitoring scores, drift report) -> run the pipeline -> score
the challenger and the champion on the same test split and the new batches' held-out slices ->
promote only on a win, re-checking the alias -> record the decision (MLflow tags + JSON
report). Any failure exits non-zero before the alias is touched, so the champion stays what it
was; a failed ingest stops the job before training.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

from mnist_softmax.atomic import write_json
from mnist_softmax.config import CONFIG_DIR, Config, compose, config_from_container
from mnist_softmax.data.download import fetch_dataset
from mnist_softmax.data.splits import load_split, split_path
from mnist_softmax.errors import ConfigError, PipelineError
from mnist_softmax.inbox.state import InboxState
from mnist_softmax.redact import redact_text
from mnist_softmax.retraining import new_batches
from mnist_softmax.retraining import retrain_report as steps
from mnist_softmax.retraining.champion_rule import Decision, decide
from mnist_softmax.retraining.history import RUNNING, mark_killed_jobs
from mnist_softmax.retraining.interrupt import Interruptible, JobInterrupted
from mnist_softmax.retraining.lock import LOCK_FILE, LockBusyError, exclusive_lock
from mnist_softmax.retraining.retrain_report import JobProgress, Outcome, build_report, summary
from mnist_softmax.stage import setup_logging

log = logging.getLogger(__name__)

STALE_RUN_SECONDS = 6 * 3600
# a job that finds no model to judge: decision kept, with one of these reasons
NO_WORKSPACE_MODEL = (
    "no champion, and no registered version was logged from this workspace's "
    "dvc.lock: nothing to promote (use --force to retrain)"
)
UP_TO_DATE = "the pipeline was up to date: no new model (use --force to retrain)"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
# The environment as the user gave it, taken before mlflow is imported: mlflow.set_tracking_uri
# exports $MLFLOW_TRACKING_URI, which would otherwise override the pipeline's own tracking.uri
# (a `-S tracking.uri=...` would be silently ignored).
USER_ENV = dict(os.environ)


def verify_upstream(cfg: Config) -> None:
    """Download every data file again into a scratch folder and check its checksum.

    A changed upstream file fails here (DataError) unless params/data/ names the new checksum;
    ``data/raw`` is not touched, so nothing that existed before is lost.
    """
    with tempfile.TemporaryDirectory(prefix="retrain-verify-") as scratch:
        fetch_dataset(cfg.data, scratch)


def pipeline_commands(overrides: list[str], force: bool) -> list[list[str]]:
    """``dvc repro`` normally; with overrides, ``dvc exp run --temp -S ...``.

    ``--temp`` runs the experiment outside the workspace, so a rejected challenger's params and
    outputs never replace the committed ones (a later plain ``dvc repro`` would otherwise see a
    workspace "up to date" with the worse model). The workspace still gets a fresh test split
    first, since both models are scored on it.
    """
    force_flag = ["--force"] if force else []
    if not overrides:
        return [["dvc", "repro", *force_flag]]
    sets = [arg for o in overrides for arg in ("-S", o)]
    return [["dvc", "repro", "preprocess"], ["dvc", "exp", "run", "--temp", *sets, *force_flag]]


def job_config(overrides: list[str], env: dict[str, str] = USER_ENV) -> Config:
    """Compose ``params/`` with the job's overrides and validate it, before any work.

    The job never trusts ``params.yaml``: a failed ``dvc exp run`` may have left a bad value
    there, and the pipeline recomposes it anyway. A bad override exits 2 here.

    Tracking URI rule: ``$MLFLOW_TRACKING_URI`` (set by the user) > ``tracking.uri`` > the
    repo's sqlite store. An override of ``tracking.uri`` while the variable is set would lose
    silently, so it is refused.
    """
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    if "tracking.uri" in keys and env.get(TRACKING_URI_ENV):
        raise ConfigError(
            f"-S tracking.uri=... conflicts with ${TRACKING_URI_ENV}="
            f"{redact_text(env[TRACKING_URI_ENV])}, which wins over tracking.uri: "
            "unset the variable or drop the override"
        )
    return config_from_container(compose(CONFIG_DIR, overrides))


def run_pipeline(commands: list[list[str]], retrain_id: str, guard: Interruptible) -> None:
    """Run the pipeline commands in the user's environment (see USER_ENV), stoppable by guard."""
    from mnist_softmax.tracking.run_logging import RETRAIN_ID_ENV

    env = {**USER_ENV, RETRAIN_ID_ENV: retrain_id}
    for cmd in commands:
        log.info("running: %s", redact_text(" ".join(cmd)))
        code = guard.run(cmd, env)
        if code != 0:
            text = redact_text(" ".join(cmd))
            raise PipelineError(f"`{text}` failed with exit code {code}; champion untouched")


def retrain(
    cfg: Config, job: JobProgress, overrides: list[str], force: bool, guard: Interruptible
) -> Decision:
    """Run one retrain, keeping each step's result in ``job``; raise PipelineError on failure."""
    from mnist_softmax.tracking import registry  # mlflow costs seconds: only when needed

    with registry.tracking_errors(cfg.tracking):
        return _retrain(cfg, job, overrides, force, guard)


def _retrain(
    cfg: Config, job: JobProgress, overrides: list[str], force: bool, guard: Interruptible
) -> Decision:
    from mnist_softmax.tracking import registry
    from mnist_softmax.tracking import run_logging as tracking

    name = cfg.tracking.registered_model
    client = registry.client_for(cfg.tracking)
    tracking.ensure_store(cfg.tracking)
    tracking.end_stale_runs(STALE_RUN_SECONDS, cfg.tracking)
    # The champion this job competes with is the one at its start: if the alias moves while
    # the pipeline runs, move_champion sees the difference and refuses to overwrite it.
    champion = job.add(steps.Champion(registry.alias_version(client, name)))
    _write_start_record(job)  # now naming the champion, should the job die from here on
    job.add(steps.Cleaned(_clean_after_killed_jobs(cfg, client, _killed_ids(job))))
    verify_upstream(cfg)
    guard.check()
    ingested = job.add(_ingest(cfg, client, champion.version, job.retrain_id, guard))
    if ingested.arrivals.new and champion.version is not None:
        job.add(_watch(cfg, champion.version, ingested.arrivals, job.stem))
    guard.check()
    job.add(steps.PipelineStarted())
    run_pipeline(pipeline_commands(overrides, force), job.retrain_id, guard)
    challenger = job.add(_find_challenger(cfg, client, champion.version, job.retrain_id))
    if challenger.version is None:
        return Decision(False, [NO_WORKSPACE_MODEL if challenger.from_workspace else UP_TO_DATE])
    return _judge(cfg, client, job, challenger.version, champion.version, ingested, guard)


def _killed_ids(job: JobProgress) -> list[str]:
    """The jobs found dead before this one started (none if it never looked)."""
    killed = job.last(steps.KilledJobs)
    return killed.ids if killed else []


def _write_start_record(job: JobProgress) -> None:
    """Write the report as ``running``: the next job turns it into ``killed`` if this job dies
    without writing the real one (the real report replaces it, same file)."""
    write_json(job.path, build_report(job, Outcome(RUNNING)))


def repair_dvc_lock(retrain_id: str, path: Path = Path("dvc.lock")) -> list[str]:
    """Restore a ``dvc.lock`` a killed ``dvc`` left half-written, so the pipeline runs again.

    DVC rewrites dvc.lock in place; a job stopped in that moment (even by SIGTERM, seen in
    the chaos script) leaves a file DVC refuses, and every later job would fail. The broken
    file is kept beside as ``dvc.lock.broken-<job>``, the committed one restored (or none,
    outside git): ``dvc repro`` then reruns what no longer matches. Returns what it cleaned,
    one line, or nothing when the file is sound or absent.
    """
    import subprocess

    import yaml
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA

    if not path.is_file():
        return []
    try:
        COMPILED_LOCKFILE_SCHEMA(yaml.safe_load(path.read_text()))
        return []
    except Exception as exc:  # YAML or schema: either way DVC cannot read it
        reason = str(exc).splitlines()[0]
    path.replace(path.with_name(f"{path.name}.broken-{retrain_id[:8]}"))
    committed = subprocess.run(["git", "show", f"HEAD:{path.name}"], capture_output=True,
                               text=True, cwd=path.parent)  # fmt: skip
    if committed.returncode == 0:
        path.write_text(committed.stdout)
    line = f"{path} was half-written by a killed job ({reason}): restored from git"
    log.warning("%s", line)
    return [line]


def _clean_after_killed_jobs(cfg: Config, client, killed_jobs: list[str]) -> list[str]:
    """Tag the versions killed jobs registered ``abandoned`` (never champion); say so."""
    from mnist_softmax.tracking import registry

    cleaned = []
    for job in killed_jobs:
        lines = [f"job {job[:8]} died without a word: recorded as killed"]
        lines += [
            f"v{version}, registered by job {job[:8]}: abandoned"
            for version in registry.abandon_versions(
                client, cfg.tracking.registered_model, cfg.tracking.experiment_name, job
            )
        ]
        for line in lines:
            log.warning("%s", line)
        cleaned += lines
    return cleaned


def _ingest(
    cfg: Config, client, champion: str | None, retrain_id: str, guard: Interruptible
) -> steps.Ingested:
    """Run the ingest stage, then sort the accepted batches into new and seen by the champion."""
    from mnist_softmax.tracking import registry

    before = InboxState.read(cfg.paths)
    run_pipeline([["dvc", "repro", "ingest"]], retrain_id, guard)
    quarantined = InboxState.read(cfg.paths).since(before)["quarantined"]
    name = cfg.tracking.registered_model
    seen = registry.trained_batches(client, name, champion) if champion is not None else []
    return steps.Ingested(quarantined, seen, new_batches.arrivals(cfg, seen))


def _watch(cfg: Config, champion: str, found: new_batches.Arrivals, stem: str) -> steps.Watched:
    """Score the champion on the batches new to it and write the drift report, before training."""
    name = cfg.tracking.registered_model
    monitoring, paths = new_batches.watch_champion(cfg, name, champion, found, stem)
    return steps.Watched(monitoring, [str(p) for p in paths])


def _find_challenger(
    cfg: Config, client, champion: str | None, retrain_id: str
) -> steps.Challenger:
    """The version this job's pipeline registered; on a first job with an up-to-date repo (no
    run, no champion), the version logged from the workspace's own ``dvc.lock``."""
    from mnist_softmax.tracking import registry, run_record
    from mnist_softmax.tracking import run_logging as tracking

    run = registry.run_of_retrain(client, cfg.tracking.experiment_name, retrain_id)
    if run is not None:
        return steps.Challenger(run.data.tags.get(tracking.TAG_VERSION))
    if champion is None:
        name = cfg.tracking.registered_model
        version = registry.workspace_version(client, name, run_record.dvc_lock_tags())
        return steps.Challenger(version, from_workspace=True)
    return steps.Challenger(None)


def _judge(
    cfg: Config,
    client,
    job: JobProgress,
    challenger: str,
    champion: str | None,
    ingested: steps.Ingested,
    guard: Interruptible,
) -> Decision:
    """Score both models on the same data, apply the rule, promote on a win."""
    found = ingested.arrivals
    name = cfg.tracking.registered_model
    scores = _scores(cfg, name, {"challenger": challenger, "champion": champion}, found)
    job.add(steps.Scored(scores))
    rule = new_batches.rule_for(cfg.retrain, bool(found.new) and champion is not None)
    decision = decide(scores["challenger"], scores.get("champion"), rule)
    guard.check()  # a signal during scoring: stop before the alias moves
    if decision.promote:
        job.add(_promote(client, name, challenger, champion, job))
    return decision


def _promote(
    client, name: str, challenger: str, champion: str | None, job: JobProgress
) -> steps.Promoted:
    """Move the alias to the challenger unless it moved since the start (then record who holds
    it now, not who held it before, and re-raise)."""
    from mnist_softmax.tracking import registry

    try:
        registry.move_champion(client, name, challenger, expected=champion)
    except registry.ChampionMovedError as exc:
        job.add(steps.Conflict(exc.current))
        raise
    return steps.Promoted(challenger, registry.trained_batches(client, name, challenger))


def _scores(cfg: Config, name: str, versions: dict[str, str | None], found):
    """Each model's test-split scores, plus its new-batch slice scores when batches are new."""
    from mnist_softmax.tracking import registry

    test = load_split(split_path(cfg.paths.prepared_dir, "test"))
    compare_new = found.new and versions["champion"] is not None
    held_out = found.held_out() if compare_new else None  # the same slices for both models
    scores = {}
    for role, version in versions.items():
        if version is None:
            continue
        served = registry.load_served(name, version)
        scores[role] = registry.score_served(served, test, cfg)
        if held_out is not None:
            scores[role] |= new_batches.as_new_batch_scores(
                registry.score_served(served, held_out, cfg)
            )
    return scores


def _record(cfg: Config | None, job: JobProgress, outcome: Outcome, seconds: float) -> dict:
    """Build the report, write it as JSON (the job history), then mirror it into MLflow tags.

    The JSON comes first and alone decides the history: tags are best effort, since the
    tracking server may be the very thing that failed.
    """
    if cfg is not None and (job.last(steps.Champion) is None or _challenger_of(job) is None):
        try:
            _find_what_the_job_left(cfg, job)
        except Exception as exc:
            log.warning("champion and versions not looked up: %s", redact_text(str(exc))[:200])
    report = build_report(job, outcome, seconds)
    write_json(job.path, report)
    log.info("report: %s", job.path)
    if report["challenger"] is not None and cfg is not None:
        try:
            _tag_decision(cfg, report)
        except Exception as exc:
            log.warning("decision not tagged in MLflow: %s", redact_text(str(exc))[:200])
    return report


def _challenger_of(job: JobProgress) -> str | None:
    """The version this job judges, if it found one (a stopped job may not have)."""
    challenger = job.last(steps.Challenger)
    return challenger.version if challenger else None


def _find_what_the_job_left(cfg: Config, job: JobProgress) -> None:
    """A job stopped early: name the champion (it cannot have moved: the job never got that
    far), and the version its pipeline registered, if any, so it is tagged as never judged."""
    from mnist_softmax.tracking import registry

    client = registry.client_for(cfg.tracking)
    name = cfg.tracking.registered_model
    if job.last(steps.Champion) is None:
        job.add(steps.Champion(registry.alias_version(client, name)))
    if job.last(steps.PipelineStarted) is not None and _challenger_of(job) is None:
        run = registry.run_of_retrain(client, cfg.tracking.experiment_name, job.retrain_id)
        if run is not None:
            versions = registry.versions_of_run(client, name, run.info.run_id)
            job.add(steps.Challenger(versions[0] if versions else None))


def _tag_decision(cfg: Config, report: dict) -> None:
    """Mirror the decision onto the challenger's run and version, for the MLflow UI."""
    from mnist_softmax.tracking import registry

    client = registry.client_for(cfg.tracking)
    name, challenger = cfg.tracking.registered_model, report["challenger"]
    tags = {
        registry.TAG_DECISION: report["decision"],
        "retrain.reasons": "; ".join(report["reasons"]),
        "retrain.champion_before": str(report["champion_before"]),
        "retrain.new_batches": ",".join(report["new_batches"]),
    }
    run_id = client.get_model_version(name, challenger).run_id
    for key, value in tags.items():
        client.set_tag(run_id, key, value[:5000])
        client.set_model_version_tag(name, challenger, key, value[:5000])
    for path in report["drift_report"]:  # the job's drift report, beside the model it judged
        client.log_artifact(run_id, path, "drift")
    for key, value in report["monitoring"].items():  # the champion on data it never saw
        client.log_metric(run_id, f"monitor/champion_{key.replace('/', '_')}", value)


def _outcome_of(exc: Exception, job: JobProgress) -> Outcome:
    """The decision and reason of a job that raised: ours have their own line, others their
    type and first line."""
    if isinstance(exc, JobInterrupted):
        return Outcome("interrupted", [str(exc)])
    if isinstance(exc, PipelineError):
        return Outcome("conflict" if job.last(steps.Conflict) else "failed", [str(exc)])
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return Outcome("failed", [f"{type(exc).__name__}: {first}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-softmax retrain", description=__doc__)
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="Hydra override passed to `dvc exp run -S` (repeatable)",
    )
    parser.add_argument("--force", action="store_true", help="retrain even if nothing changed")
    args = parser.parse_args(argv)
    setup_logging("retrain")
    started = time.perf_counter()
    job = JobProgress(uuid.uuid4().hex, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    cfg: Config | None = None
    code = 0
    with Interruptible() as guard:
        try:
            cfg = job_config(args.overrides)  # bad config: exit 2, before the lock
            with exclusive_lock(LOCK_FILE) as lock_fd:
                guard.keep_fds = (lock_fd,)  # the pipeline's keeper holds the lock too
                job.add(steps.KilledJobs(mark_killed_jobs()))  # with the lock: those jobs are gone
                _write_start_record(job)
                job.add(steps.Cleaned(repair_dvc_lock(job.retrain_id)))
                decision = retrain(cfg, job, args.overrides, args.force, guard)
                outcome = Outcome(decision.label, decision.reasons)
        except LockBusyError as exc:  # another job runs: this one did nothing to record
            log.error("error: %s", exc)
            return exc.exit_code
        except Exception as exc:  # ours (PipelineError) or not: one line and a history entry
            outcome = _outcome_of(exc, job)
            code = exc.exit_code if isinstance(exc, PipelineError) else 1
        # recorded inside the guard: a second signal cannot stop the report being written
        report = _record(cfg, job, outcome, round(time.perf_counter() - started, 2))
    if code:
        log.error("error: %s", report["reasons"][0])
    print(redact_text(summary(report)))
    return code
