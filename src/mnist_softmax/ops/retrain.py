"""``mnist-softmax retrain``: the unattended job that must never ship a worse model.

Order matters: lock -> end stale runs -> verify upstream data -> run the pipeline -> score the
challenger and the champion on the same test split -> promote only on a win, re-checking the
alias -> record the decision (MLflow tags + JSON report). Any failure exits non-zero before the
alias is touched, so the champion stays what it was.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mnist_softmax.atomic import write_json
from mnist_softmax.config import Config, load_config
from mnist_softmax.data.download import fetch_dataset
from mnist_softmax.data.splits import load_split, split_path
from mnist_softmax.errors import PipelineError
from mnist_softmax.ops.champion_rule import Decision, decide
from mnist_softmax.ops.history import REPORT_DIR
from mnist_softmax.ops.lock import exclusive_lock
from mnist_softmax.stage import setup_logging

log = logging.getLogger(__name__)

LOCK_FILE = ".retrain.lock"
STALE_RUN_SECONDS = 6 * 3600


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
    seconds: float = 0.0

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


def run_pipeline(commands: list[list[str]], retrain_id: str) -> None:
    from mnist_softmax.tracking.run_logging import RETRAIN_ID_ENV

    env = {**os.environ, RETRAIN_ID_ENV: retrain_id}
    for cmd in commands:
        log.info("running: %s", " ".join(cmd))
        code = subprocess.call(cmd, env=env, stdout=sys.stderr)
        if code != 0:
            text = " ".join(cmd)
            raise PipelineError(f"`{text}` failed with exit code {code}; champion untouched")


def retrain(cfg: Config, report: RetrainReport, overrides: list[str], force: bool) -> Decision:
    """Run one retrain and fill ``report``; raise PipelineError on any failure."""
    from mnist_softmax.tracking import registry  # mlflow costs seconds: only when needed
    from mnist_softmax.tracking import run_logging as tracking

    name = cfg.tracking.registered_model
    client = registry.client_for(cfg.tracking)
    tracking.ensure_store(cfg.tracking)
    tracking.end_stale_runs(STALE_RUN_SECONDS, cfg.tracking)
    # The champion this job competes with is the one at its start: if the alias moves while
    # the pipeline runs, move_champion sees the difference and refuses to overwrite it.
    champion = registry.alias_version(client, name)
    report.champion_before = report.champion_after = champion
    verify_upstream(cfg)
    run_pipeline(pipeline_commands(overrides, force), report.retrain_id)
    run = registry.run_of_retrain(client, cfg.tracking.experiment_name, report.retrain_id)
    if run is not None:
        report.challenger = run.data.tags.get(tracking.TAG_VERSION)
    elif champion is None:  # first job on an up-to-date repo: its newest model is the candidate
        report.challenger = registry.latest_version(client, name)
    if report.challenger is None:
        report.decision = "kept"
        report.reasons = ["the pipeline was up to date: no new model (use --force to retrain)"]
        return Decision(False, report.reasons)
    test = load_split(split_path(cfg.paths.prepared_dir, "test"))
    scores = {"challenger": registry.score_version(name, report.challenger, test, cfg)}
    if champion is not None:
        scores["champion"] = registry.score_version(name, champion, test, cfg)
    report.metrics = scores
    decision = decide(scores["challenger"], scores.get("champion"), cfg.retrain)
    report.reasons = decision.reasons
    if decision.promote:
        try:
            registry.move_champion(client, name, report.challenger, expected=champion)
        except registry.ChampionMovedError:
            report.decision = "conflict"
            raise
        report.champion_after = report.challenger
    report.decision = decision.label
    return decision


def _record(cfg: Config, report: RetrainReport) -> Path:
    path = REPORT_DIR / f"{report.started.replace(':', '')}-{report.retrain_id[:8]}.json"
    write_json(path, asdict(report))
    if report.challenger is not None:
        from mnist_softmax.tracking import registry

        client = registry.client_for(cfg.tracking)
        name = cfg.tracking.registered_model
        tags = {"retrain.decision": report.decision, "retrain.reasons": "; ".join(report.reasons)}
        tags["retrain.champion_before"] = str(report.champion_before)
        run_id = client.get_model_version(name, report.challenger).run_id
        for key, value in tags.items():
            client.set_tag(run_id, key, value[:5000])
            client.set_model_version_tag(name, report.challenger, key, value[:5000])
    return path


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
    code = 0
    try:
        cfg = load_config()  # a bad config fails before the lock file is even created
        with exclusive_lock(LOCK_FILE):
            try:
                retrain(cfg, report, args.overrides, args.force)
            except PipelineError as exc:
                report.reasons = [str(exc)]
                report.decision = "conflict" if report.decision == "conflict" else "failed"
                code = exc.exit_code
            report.seconds = round(time.perf_counter() - started, 2)
            path = _record(cfg, report)
            log.info("report: %s", path)
    except PipelineError as exc:  # lock busy, bad config
        log.error("error: %s", exc)
        return exc.exit_code
    if code:
        log.error("error: %s", report.reasons[0])
    print(report.summary())
    return code
