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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mnist_softmax.atomic import write_json
from mnist_softmax.config import CONFIG_DIR, Config, compose, config_from_container
from mnist_softmax.data.download import fetch_dataset
from mnist_softmax.data.splits import load_split, split_path
from mnist_softmax.errors import ConfigError, PipelineError
from mnist_softmax.inbox.state import InboxState
from mnist_softmax.redact import redact_text
from mnist_softmax.retraining import new_batches
from mnist_softmax.retraining.champion_rule import Decision, decide
from mnist_softmax.retraining.history import REPORT_DIR, RUNNING, mark_killed_jobs
from mnist_softmax.retraining.interrupt import Interruptible, JobInterrupted
from mnist_softmax.retraining.lock import LOCK_FILE, LockBusyError, exclusive_lock
from mnist_softmax.stage import setup_logging

log = logging.getLogger(__name__)

STALE_RUN_SECONDS = 6 * 3600
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
# The environment as the user gave it, taken before mlflow is imported: mlflow.set_tracking_uri
# exports $MLFLOW_TRACKING_URI, which would otherwise override the pipeline's own tracking.uri
# (a `-S tracking.uri=...` would be silently ignored).
USER_ENV = dict(os.environ)


@dataclass
class RetrainReport:
    """What one job did; written as JSON and mirrored into MLflow tags."""

    retrain_id: str
    started: str
    decision: str = "failed"
    reasons: list[str] = field(default_factory=list)
    challenger: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)  # by this job's ingest
    new_batches: list[str] = field(default_factory=list)  # accepted, unseen by the champion
    monitoring: dict[str, float] = field(default_factory=dict)  # the champion on them
    drift_report: list[str] = field(default_factory=list)  # JSON and PNG
    champion_batches: list[str] = field(default_factory=list)  # the champion_after's
    seconds: float = 0.0
    champion_known: bool = False  # champion_before was read (a report always names it)
    pipeline_started: bool = False  # the job ran the training pipeline: it may have a version
    killed_jobs: list[str] = field(default_factory=list)  # jobs found dead, ids
    cleaned: list[str] = field(default_factory=list)  # what this job cleaned up after them

    @property
    def stem(self) -> str:
        """File name stem shared by this job's report and drift report."""
        return f"{self.started.replace(':', '')}-{self.retrain_id[:8]}"

    @property
    def path(self) -> Path:
        """This job's JSON report: its start record first, then the real one."""
        return REPORT_DIR / f"{self.stem}.json"

    def summary(self) -> str:
        why = self.reasons[0] if self.reasons else ""
        return (
            f"retrain {self.decision}: challenger {_v(self.challenger)}, champion "
            f"{_v(self.champion_before)} -> {_v(self.champion_after)} ({why})"
        )


def _v(version: str | None) -> str:
    return "none" if version is None else f"v{version}"


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
    cfg: Config, report: RetrainReport, overrides: list[str], force: bool, guard: Interruptible
) -> Decision:
    """Run one retrain and fill ``report``; raise PipelineError on any failure."""
    from mnist_softmax.tracking import registry  # mlflow costs seconds: only when needed

    with registry.tracking_errors(cfg.tracking):
        return _retrain(cfg, report, overrides, force, guard)


def _retrain(
    cfg: Config, report: RetrainReport, overrides: list[str], force: bool, guard: Interruptible
) -> Decision:
    from mnist_softmax.tracking import registry, run_record
    from mnist_softmax.tracking import run_logging as tracking

    name = cfg.tracking.registered_model
    client = registry.client_for(cfg.tracking)
    tracking.ensure_store(cfg.tracking)
    tracking.end_stale_runs(STALE_RUN_SECONDS, cfg.tracking)
    # The champion this job competes with is the one at its start: if the alias moves while
    # the pipeline runs, move_champion sees the difference and refuses to overwrite it.
    champion = registry.alias_version(client, name)
    report.champion_before = report.champion_after = champion
    report.champion_known = True
    _write_start_record(report)  # now naming the champion, should the job die from here on
    _clean_after_killed_jobs(cfg, client, report)
    verify_upstream(cfg)
    guard.check()
    found = _ingest(cfg, client, champion, report, guard)
    if found.new and champion is not None:
        report.monitoring, paths = new_batches.watch_champion(cfg, name, champion, found,
                                                              report.stem)  # fmt: skip
        report.drift_report = [str(p) for p in paths]
    guard.check()
    report.pipeline_started = True
    run_pipeline(pipeline_commands(overrides, force), report.retrain_id, guard)
    run = registry.run_of_retrain(client, cfg.tracking.experiment_name, report.retrain_id)
    if run is not None:
        report.challenger = run.data.tags.get(tracking.TAG_VERSION)
    elif champion is None:  # first job on an up-to-date repo: the workspace's own model
        report.challenger = registry.workspace_version(client, name, run_record.dvc_lock_tags())
        if report.challenger is None:
            report.decision = "kept"
            report.reasons = [
                "no champion, and no registered version was logged from this workspace's "
                "dvc.lock: nothing to promote (use --force to retrain)"
            ]
            return Decision(False, report.reasons)
    if report.challenger is None:
        report.decision = "kept"
        report.reasons = ["the pipeline was up to date: no new model (use --force to retrain)"]
        return Decision(False, report.reasons)
    scores = _scores(cfg, name, {"challenger": report.challenger, "champion": champion}, found)
    report.metrics = scores
    rule = new_batches.rule_for(cfg.retrain, bool(found.new) and champion is not None)
    decision = decide(scores["challenger"], scores.get("champion"), rule)
    report.reasons = decision.reasons
    guard.check()  # a signal during scoring: stop before the alias moves
    if decision.promote:
        try:
            registry.move_champion(client, name, report.challenger, expected=champion)
        except registry.ChampionMovedError as exc:
            report.decision = "conflict"
            report.champion_after = exc.current  # who holds it now, not who held it before
            raise
        report.champion_after = report.challenger
        report.champion_batches = registry.trained_batches(client, name, report.challenger)
    report.decision = decision.label
    return decision


def _write_start_record(report: RetrainReport) -> None:
    """Write the report as ``running``: the next job turns it into ``killed`` if this job dies
    without writing the real one (the real report replaces it, same file)."""
    write_json(report.path, {**asdict(report), "decision": RUNNING})


def repair_dvc_lock(report: RetrainReport, path: Path = Path("dvc.lock")) -> None:
    """Restore a ``dvc.lock`` a killed ``dvc`` left half-written, so the pipeline runs again.

    DVC rewrites dvc.lock in place; a job stopped in that moment (even by SIGTERM, seen in
    the chaos script) leaves a file DVC refuses, and every later job would fail. The broken
    file is kept beside as ``dvc.lock.broken-<job>``, the committed one restored (or none,
    outside git): ``dvc repro`` then reruns what no longer matches.
    """
    import subprocess

    import yaml
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA

    if not path.is_file():
        return
    try:
        COMPILED_LOCKFILE_SCHEMA(yaml.safe_load(path.read_text()))
        return
    except Exception as exc:  # YAML or schema: either way DVC cannot read it
        reason = str(exc).splitlines()[0]
    path.replace(path.with_name(f"{path.name}.broken-{report.retrain_id[:8]}"))
    committed = subprocess.run(["git", "show", f"HEAD:{path.name}"], capture_output=True,
                               text=True, cwd=path.parent)  # fmt: skip
    if committed.returncode == 0:
        path.write_text(committed.stdout)
    report.cleaned.append(f"{path} was half-written by a killed job ({reason}): restored from git")
    log.warning("%s", report.cleaned[-1])


def _clean_after_killed_jobs(cfg: Config, client, report: RetrainReport) -> None:
    """Tag the versions killed jobs registered ``abandoned`` (never champion); report it."""
    from mnist_softmax.tracking import registry

    for job in report.killed_jobs:
        lines = [f"job {job[:8]} died without a word: recorded as killed"]
        lines += [
            f"v{version}, registered by job {job[:8]}: abandoned"
            for version in registry.abandon_versions(
                client, cfg.tracking.registered_model, cfg.tracking.experiment_name, job
            )
        ]
        for line in lines:
            log.warning("%s", line)
        report.cleaned += lines


def _ingest(cfg: Config, client, champion: str | None, report: RetrainReport, guard):
    """Run the ingest stage, then sort the accepted batches into new and seen by the champion."""
    from mnist_softmax.tracking import registry

    before = InboxState.read(cfg.paths)
    run_pipeline([["dvc", "repro", "ingest"]], report.retrain_id, guard)
    report.quarantined = InboxState.read(cfg.paths).since(before)["quarantined"]
    name = cfg.tracking.registered_model
    seen = registry.trained_batches(client, name, champion) if champion is not None else []
    report.champion_batches = seen
    found = new_batches.arrivals(cfg, seen)
    report.new_batches = found.names
    return found


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


def _record(cfg: Config | None, report: RetrainReport) -> Path:
    """Write the JSON report (the job history), then mirror the decision into MLflow tags.

    The JSON comes first and alone decides the history: tags are best effort, since the
    tracking server may be the very thing that failed.
    """
    report.reasons = [redact_text(r) for r in report.reasons]
    if cfg is not None and (not report.champion_known or report.challenger is None):
        try:
            _find_what_the_job_left(cfg, report)
        except Exception as exc:
            log.warning("champion and versions not looked up: %s", redact_text(str(exc))[:200])
    write_json(report.path, asdict(report))
    if report.challenger is not None and cfg is not None:
        try:
            _tag_decision(cfg, report)
        except Exception as exc:
            log.warning("decision not tagged in MLflow: %s", redact_text(str(exc))[:200])
    return report.path


def _find_what_the_job_left(cfg: Config, report: RetrainReport) -> None:
    """A job stopped early: name the champion (it cannot have moved: the job never got that
    far), and the version its pipeline registered, if any, so it is tagged as never judged."""
    from mnist_softmax.tracking import registry

    client = registry.client_for(cfg.tracking)
    name = cfg.tracking.registered_model
    if not report.champion_known and report.decision != "conflict":
        report.champion_before = report.champion_after = registry.alias_version(client, name)
        report.champion_known = True
    if report.pipeline_started and report.challenger is None:
        run = registry.run_of_retrain(client, cfg.tracking.experiment_name, report.retrain_id)
        if run is not None:
            versions = registry.versions_of_run(client, name, run.info.run_id)
            report.challenger = versions[0] if versions else None


def _tag_decision(cfg: Config, report: RetrainReport) -> None:
    from mnist_softmax.tracking import registry

    client = registry.client_for(cfg.tracking)
    name = cfg.tracking.registered_model
    tags = {registry.TAG_DECISION: report.decision, "retrain.reasons": "; ".join(report.reasons)}
    tags["retrain.champion_before"] = str(report.champion_before)
    tags["retrain.new_batches"] = ",".join(report.new_batches)
    run_id = client.get_model_version(name, report.challenger).run_id
    for key, value in tags.items():
        client.set_tag(run_id, key, value[:5000])
        client.set_model_version_tag(name, report.challenger, key, value[:5000])
    for path in report.drift_report:  # the job's drift report, beside the model it judged
        client.log_artifact(run_id, path, "drift")
    for key, value in report.monitoring.items():  # the champion on data it never saw
        client.log_metric(run_id, f"monitor/champion_{key.replace('/', '_')}", value)


def _decision_of(exc: PipelineError, report: RetrainReport) -> str:
    if isinstance(exc, JobInterrupted):
        return "interrupted"
    return "conflict" if report.decision == "conflict" else "failed"


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
    report = RetrainReport(uuid.uuid4().hex, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    cfg: Config | None = None
    code = 0
    with Interruptible() as guard:
        try:
            cfg = job_config(args.overrides)  # bad config: exit 2, before the lock
            with exclusive_lock(LOCK_FILE) as lock_fd:
                guard.keep_fds = (lock_fd,)  # the pipeline's keeper holds the lock too
                report.killed_jobs = mark_killed_jobs()  # with the lock: those jobs are gone
                _write_start_record(report)
                repair_dvc_lock(report)
                retrain(cfg, report, args.overrides, args.force, guard)
        except LockBusyError as exc:  # another job runs: this one did nothing to record
            log.error("error: %s", exc)
            return exc.exit_code
        except PipelineError as exc:
            report.decision, code = _decision_of(exc, report), exc.exit_code
            report.reasons = [str(exc)]
        except Exception as exc:  # not ours: still one line and a history entry
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            report.decision, report.reasons, code = "failed", [f"{type(exc).__name__}: {first}"], 1
        # recorded inside the guard: a second signal cannot stop the report being written
        report.seconds = round(time.perf_counter() - started, 2)
        log.info("report: %s", _record(cfg, report))
    if code:
        log.error("error: %s", report.reasons[0])
    print(redact_text(report.summary()))
    return code
