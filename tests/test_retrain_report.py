"""The retrain job's report, built once from the results of the steps the job finished."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mnist_softmax.retraining.history import RUNNING
from mnist_softmax.retraining.new_batches import Arrivals
from mnist_softmax.retraining.retrain_report import (
    Challenger,
    Champion,
    Cleaned,
    Conflict,
    Ingested,
    JobProgress,
    KilledJobs,
    Outcome,
    PipelineStarted,
    Promoted,
    Scored,
    Watched,
    build_report,
    summary,
)

# the keys `mnist-softmax history`, the chaos script and the tests read: the format is fixed
KEYS = {"retrain_id", "started", "decision", "reasons", "challenger", "champion_before",
        "champion_after", "metrics", "quarantined", "new_batches", "monitoring", "drift_report",
        "champion_batches", "seconds", "champion_known", "pipeline_started", "killed_jobs",
        "cleaned"}  # fmt: skip


def _after_ingest() -> JobProgress:
    """A job that read champion v3, cleaned after one dead job and ingested, then stopped."""
    job = JobProgress("ab" * 16, "2026-01-01T03:00:00Z")
    job.add(KilledJobs(["cd" * 16]))
    job.add(Cleaned(["dvc.lock was half-written by a killed job: restored from git"]))
    job.add(Champion("3"))
    job.add(Cleaned(["job cdcdcdcd died without a word: recorded as killed"]))
    new = Arrivals(new=[SimpleNamespace(name="week-2")])  # only names reach the report
    job.add(Ingested(["week-2-bad"], ["week-1"], new))
    return job


def test_a_job_stopped_after_ingest_reports_what_it_learned():
    job = _after_ingest()
    secret = "interrupted by SIGTERM while reading http://bob:pw123@host/: champion untouched"
    report = build_report(job, Outcome("interrupted", [secret]), seconds=12.5)
    assert set(report) == KEYS
    assert (report["champion_before"], report["champion_after"]) == ("3", "3")
    assert report["champion_known"] and not report["pipeline_started"]
    assert (report["quarantined"], report["new_batches"]) == (["week-2-bad"], ["week-2"])
    assert report["champion_batches"] == ["week-1"]  # the champion's, since nothing moved
    assert (report["decision"], report["challenger"], report["metrics"]) == (
        "interrupted",
        None,
        {},
    )
    assert report["killed_jobs"] == ["cd" * 16]
    assert (
        report["cleaned"][0].startswith("dvc.lock") and "recorded as killed" in report["cleaned"][1]
    )
    assert "pw123" not in report["reasons"][0] and report["seconds"] == 12.5
    assert summary(report).startswith("retrain interrupted: challenger none, champion v3 -> v3")


def test_the_start_record_has_the_full_format_and_says_running():
    job = JobProgress("ab" * 16, "2026-01-01T03:00:00Z")
    record = build_report(job, Outcome(RUNNING))
    assert set(record) == KEYS and record["decision"] == RUNNING
    assert (record["champion_known"], record["champion_before"], record["cleaned"]) == (
        False,
        None,
        [],
    )
    assert job.path.name == "2026-01-01T030000Z-abababab.json"


@pytest.mark.parametrize(
    ("last_step", "after", "batches"),
    [(None, "3", ["week-1"]), (Promoted("4", ["week-1", "week-2"]), "4", ["week-1", "week-2"]),
     (Conflict("1"), "1", ["week-1"])],
    ids=["kept", "promoted", "conflict"],
)  # fmt: skip
def test_the_champion_after_is_who_holds_the_alias(last_step, after, batches):
    job = _after_ingest()
    job.add(Watched({"new_batches/acc": 0.9}, ["drift.json", "drift.png"]))
    job.add(PipelineStarted())
    job.add(Challenger("4"))
    job.add(Scored({"challenger": {"test/acc": 0.93}, "champion": {"test/acc": 0.92}}))
    if last_step is not None:
        job.add(last_step)
    report = build_report(job, Outcome("kept", ["test/acc: ... ok"]))
    assert (report["champion_before"], report["champion_after"]) == ("3", after)
    assert report["champion_batches"] == batches
    assert (report["challenger"], report["pipeline_started"]) == ("4", True)
    assert report["metrics"]["challenger"]["test/acc"] == 0.93
    assert report["monitoring"] == {"new_batches/acc": 0.9}
    assert report["drift_report"] == ["drift.json", "drift.png"]
