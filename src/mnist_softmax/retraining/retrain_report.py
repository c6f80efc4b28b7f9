"""What a retrain job learned, step by step, and the one report built from it.

Each step of :mod:`.retrain` returns a small frozen result (the champion at start, what the
ingest found, the monitoring scores...), which the job appends to its :class:`JobProgress` as the
step finishes. The JSON report (the job history) and the MLflow tags are built from that list
by :func:`build_report`, once at the end, or from what is known so far for the start record:
a job that fails or is interrupted half-way still reports every step it finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mnist_softmax.redact import redact_text
from mnist_softmax.retraining.history import REPORT_DIR
from mnist_softmax.retraining.new_batches import Arrivals


@dataclass(frozen=True)
class KilledJobs:
    """Jobs found dead with their start record (ids): this job cleans up after them."""

    ids: list[str]


@dataclass(frozen=True)
class Cleaned:
    """One line per thing this job cleaned up after killed jobs (a step may add several)."""

    lines: list[str]


@dataclass(frozen=True)
class Champion:
    """The champion this job competes with: the one at its start (None: no champion yet)."""

    version: str | None


@dataclass(frozen=True)
class Ingested:
    """What the ingest found: batches it quarantined, and the accepted ones sorted by whether
    the champion was trained on them (``champion_batches``)."""

    quarantined: list[str]
    champion_batches: list[str]
    arrivals: Arrivals


@dataclass(frozen=True)
class Watched:
    """The champion on the batches new to it (monitoring scores) and the drift report's paths."""

    monitoring: dict[str, float]
    drift_report: list[str]


@dataclass(frozen=True)
class PipelineStarted:
    """The job started the training pipeline: from here it may have registered a version."""


@dataclass(frozen=True)
class Challenger:
    """The version the pipeline registered (None: none); ``from_workspace`` when it was looked
    up by the workspace's ``dvc.lock`` because this job's pipeline logged no run."""

    version: str | None
    from_workspace: bool = False


@dataclass(frozen=True)
class Scored:
    """Both models' scores on the same test split (and new-batch slices), by role."""

    metrics: dict[str, dict[str, float]]


@dataclass(frozen=True)
class Promoted:
    """The alias moved to the challenger, and the batches that new champion was trained on."""

    version: str
    champion_batches: list[str]


@dataclass(frozen=True)
class Conflict:
    """Someone else moved the alias during the job: who holds it now (the report's
    ``champion_after``, not the stale champion it started with)."""

    current: str | None


@dataclass(frozen=True)
class Outcome:
    """How the job ended: its decision label and each reason in one line."""

    decision: str
    reasons: list[str] = field(default_factory=list)


Step = TypeVar("Step")


@dataclass
class JobProgress:
    """One job's identity and the results of the steps it finished, in order."""

    retrain_id: str
    started: str
    steps: list[object] = field(default_factory=list)

    def add(self, result: Step) -> Step:
        """Keep a step's result (the report is built from these) and hand it back."""
        self.steps.append(result)
        return result

    def last(self, kind: type[Step]) -> Step | None:
        """The latest result of this kind, or None if no such step finished."""
        return next((s for s in reversed(self.steps) if isinstance(s, kind)), None)

    def every(self, kind: type[Step]) -> list[Step]:
        """Every result of this kind, in the order the steps finished."""
        return [s for s in self.steps if isinstance(s, kind)]

    @property
    def stem(self) -> str:
        """File name stem shared by this job's report and drift report."""
        return f"{self.started.replace(':', '')}-{self.retrain_id[:8]}"

    @property
    def path(self) -> Path:
        """This job's JSON report: its start record first, then the real one."""
        return REPORT_DIR / f"{self.stem}.json"


def build_report(job: JobProgress, outcome: Outcome, seconds: float = 0.0) -> dict[str, Any]:
    """The job's JSON report (keys read by ``history`` and the chaos script) from its steps.

    A report names the champion read at the start; after a promotion the champion is the
    challenger, after a conflict whoever holds the alias now.
    """
    champion, ingested = job.last(Champion), job.last(Ingested)
    watched, challenger = job.last(Watched), job.last(Challenger)
    scored, promoted, conflict = job.last(Scored), job.last(Promoted), job.last(Conflict)
    before = champion.version if champion else None
    after = conflict.current if conflict else promoted.version if promoted else before
    batches = promoted or ingested
    killed = job.last(KilledJobs)
    return {
        "retrain_id": job.retrain_id,
        "started": job.started,
        "decision": outcome.decision,
        "reasons": [redact_text(r) for r in outcome.reasons],
        "challenger": challenger.version if challenger else None,
        "champion_before": before,
        "champion_after": after,
        "metrics": scored.metrics if scored else {},
        "quarantined": ingested.quarantined if ingested else [],  # by this job's ingest
        "new_batches": ingested.arrivals.names if ingested else [],  # unseen by the champion
        "monitoring": watched.monitoring if watched else {},  # the champion on them
        "drift_report": watched.drift_report if watched else [],  # JSON and PNG
        "champion_batches": batches.champion_batches if batches else [],  # champion_after's
        "seconds": seconds,
        "champion_known": champion is not None,  # a report always names it
        "pipeline_started": job.last(PipelineStarted) is not None,
        "killed_jobs": killed.ids if killed else [],
        "cleaned": [line for step in job.every(Cleaned) for line in step.lines],
    }


def summary(report: dict[str, Any]) -> str:
    """The job's one printed line: decision, challenger, champion before -> after, first why."""
    why = report["reasons"][0] if report["reasons"] else ""
    return (
        f"retrain {report['decision']}: challenger {_v(report['challenger'])}, champion "
        f"{_v(report['champion_before'])} -> {_v(report['champion_after'])} ({why})"
    )


def _v(version: str | None) -> str:
    return "none" if version is None else f"v{version}"
