"""What the retrain job does with batches the champion never saw: watch, report drift, compare.

Before retraining, the champion is scored on every image of the new batches (it has seen none
of them): the monitoring signal of how the model in service does on the data now arriving. The
drift report says why it might do worse: other labels, other ink, lower confidence. After
retraining, both models are compared on the batches' held-out slices, which neither trained on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_softmax.atomic import write_json
from mnist_softmax.config import NEW_BATCH_METRICS, Config, RetrainConfig
from mnist_softmax.data.prepare import load_raw, training_pool
from mnist_softmax.data.splits import Split, concat_splits
from mnist_softmax.evaluation.batch_scores import set_scores
from mnist_softmax.evaluation.drift import coverage_drift, drift_report, plot_drift
from mnist_softmax.inbox.batch_store import AcceptedBatch, load_batches

log = logging.getLogger(__name__)


@dataclass
class Arrivals:
    """The manifest's batches split by whether the champion was trained on them."""

    new: list[AcceptedBatch] = field(default_factory=list)
    seen: list[AcceptedBatch] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [batch.name for batch in self.new]

    def whole(self) -> Split:
        """Every image of the new batches: all unseen by the champion."""
        return concat_splits([Split(b.X, b.y) for b in self.new])

    def held_out(self) -> Split:
        """The new batches' held-out slices: unseen by the champion and the challenger."""
        return concat_splits([b.held_out_part() for b in self.new])


def arrivals(cfg: Config, champion_batches: list[str]) -> Arrivals:
    """Load the accepted batches and sort them into new (to the champion) and seen."""
    batches = load_batches(cfg.paths.batches_dir, cfg.paths.batch_manifest)
    return Arrivals(
        new=[b for b in batches if b.name not in champion_batches],
        seen=[b for b in batches if b.name in champion_batches],
    )


def rule_for(rule: RetrainConfig, new_batches: bool) -> RetrainConfig:
    """The configured rule, without its new-batch metrics when no batch is new to the champion."""
    if new_batches:
        return rule
    return RetrainConfig(
        higher_is_better=[n for n in rule.higher_is_better if n not in NEW_BATCH_METRICS],
        lower_is_better=[n for n in rule.lower_is_better if n not in NEW_BATCH_METRICS],
        margins={n: m for n, m in rule.margins.items() if n not in NEW_BATCH_METRICS},
    )


def as_new_batch_scores(scores: dict[str, float]) -> dict[str, float]:
    """Rename test-split scores (``test/acc``...) to the rule's ``new_batches/...`` names."""
    renamed = {key.replace("test/", "new_batches/", 1): value for key, value in scores.items()}
    return {name: value for name, value in renamed.items() if name in NEW_BATCH_METRICS}


def watch_champion(cfg: Config, name: str, champion: str, found: Arrivals, stem: str):
    """Score the champion on the new batches, write the drift report; return (scores, paths).

    Returns the monitoring scores (``new_batches/acc``, ``new_batches/nll_calibrated`` on all
    the new images) and the drift report's JSON and PNG paths.
    """
    from mnist_softmax.tracking import registry

    served = registry.load_served(name, champion)
    whole = found.whole()
    watched = as_new_batch_scores(registry.score_served(served, whole, cfg))
    test = load_raw(cfg.paths.raw_dir, cfg.data, "test")  # fetched: the ingest stage needs it
    pool = training_pool(load_raw(cfg.paths.raw_dir, cfg.data, "train"), found.seen)
    report = drift_report(
        whole.X, whole.y, pool.X, pool.y, list(cfg.data.class_names),
        registry.confidences(served, whole.X), registry.confidences(served, test.X),
        coverage=champion_coverage(served, found),
    )  # fmt: skip
    report["batches"] = found.names
    report["champion"] = {"version": champion, **watched}
    json_path = Path(cfg.paths.drift_dir) / f"{stem}.json"
    write_json(json_path, report)
    png_path = plot_drift(report, json_path.with_suffix(".png"))
    labels = report["labels"]
    log.info(
        "champion v%s on the new batches %s (%d images it never saw): acc %.4f, NLL %.4f; "
        "label drift p=%.3g (chi-square), intensity shift %+.4f; drift report %s",
        champion, ", ".join(found.names), len(whole), watched.get("new_batches/acc", np.nan),
        watched.get("new_batches/nll_calibrated", np.inf), labels["p_value"],
        report["ink"]["intensity_shift"], json_path,
    )  # fmt: skip
    if report["coverage"] and report["coverage"]["drift"]:
        short = [n for n, b in report["coverage"]["batches"].items() if b["drift"]]
        log.warning("WARNING: the champion's prediction sets cover less than %.2f on the "
                    "held-out slices of %s: drift", report["coverage"]["target"],
                    ", ".join(short))  # fmt: skip
    return watched, [json_path, png_path]


def champion_coverage(served, found: Arrivals) -> dict | None:
    """The :func:`coverage_drift` of the served champion's sets on each new batch's held-out
    slice; None for a champion registered before prediction sets."""
    conformal = getattr(served, "conformal", None)
    if conformal is None:
        return None
    per_batch = {}
    for batch in found.new:
        part = batch.held_out_part()
        scores = set_scores(served.model, served.temperature, conformal, part)
        per_batch[batch.name] = {"n": float(len(part)), **scores}
    return coverage_drift(per_batch, conformal.alpha)
