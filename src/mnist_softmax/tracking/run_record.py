"""What one MLflow run records, gathered from the pipeline's files without importing mlflow.

The log stage mirrors DVC's files into MLflow: the composed config becomes flat params
(``optimizer.lr``), the JSON metrics files flat metrics (``test/acc``), and git, ``dvc.lock``
and the data checksums become tags. Kept apart from :mod:`mnist_softmax.tracking.run_logging`
so the pure parts are testable without a store and without mlflow's multi-second import.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mnist_softmax.config import Config, PathsConfig
from mnist_softmax.errors import DataError
from mnist_softmax.inbox.batch_store import load_manifest, manifest_sha256
from mnist_softmax.redact import redact_mapping

MAX_PARAM_CHARS = 500  # MLflow accepts 6000 since 2.x; 500 keeps old servers and the UI happy


def flatten_params(cfg: Config) -> dict[str, str]:
    """Flatten the composed config to ``{"optimizer.lr": "0.1", ...}`` (lists as JSON text)."""
    flat: dict[str, str] = {}

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                visit(value, f"{prefix}{key}.")
            return
        text = json.dumps(node) if isinstance(node, list | dict) else str(node)
        flat[prefix[:-1]] = _truncate(text)

    visit(cfg.to_dict(), "")
    return redact_mapping(flat)  # tracking.uri may carry a password


def flatten_metrics(data: dict[str, Any], top_prefix: str = "") -> dict[str, float]:
    """Flatten nested JSON metrics with "/" (``{"test": {"acc": x}}`` -> ``test/acc``).

    Top-level scalars get ``top_prefix`` (``train_seconds`` of train.json -> ``train/...``);
    booleans stay ``bool`` (:func:`mlflow_values` makes them tags) and text (already a param)
    is skipped, since metrics are numbers.
    """
    flat = _flatten_nested(data)
    return {(k if "/" in k else f"{top_prefix}{k}"): v for k, v in flat.items()}


def _flatten_nested(node: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": v for k, v in _flatten_nested(value).items()})
        elif isinstance(value, bool):
            flat[str(key)] = value
        elif isinstance(value, int | float) and math.isfinite(float(value)):
            flat[str(key)] = float(value)
    return flat


def read_final_metrics(paths: PathsConfig) -> dict[str, float]:
    """Merge every JSON metrics file into one flat dict (see :func:`merge_final_metrics`)."""
    merged = merge_final_metrics(*(read_report(path) for path in metrics_files(paths)))
    if Path(paths.batch_metrics).is_file():  # each accepted batch's held-out slice
        merged |= flatten_metrics({"batch": json.loads(Path(paths.batch_metrics).read_text())})
    return merged


def read_report(path: str | Path) -> dict[str, Any]:
    """Return one JSON report of an earlier stage (a missing one names the fix)."""
    return json.loads(_existing(path).read_text())


def metrics_files(paths: PathsConfig) -> tuple[str, str, str, str]:
    """Return the data report, train, calibration and evaluation metrics files, in that order."""
    return (paths.data_report, paths.train_metrics, paths.calibration_metrics, paths.eval_metrics)


def merge_final_metrics(
    data: dict[str, Any], train: dict[str, Any], calibration: dict[str, Any], test: dict[str, Any]
) -> dict[str, float]:
    """Flatten the four metrics reports into one dict (later reports win on shared keys).

    The calibrate stage's ``val/*`` (same model, same split) supersedes train.json's. The
    fast sweep passes the same reports from memory, so its runs carry the same names.
    """
    merged: dict[str, float] = {}
    prefixes = ("data/", "train/", "calibration/", "")  # the last: temperature, test/*, per_class/*
    for report, prefix in zip((data, train, calibration, test), prefixes, strict=True):
        merged.update(flatten_metrics(report, prefix))
    return merged


# The names a person compares in MLflow. Its chart view groups metrics by the part before the
# first "/" and orders the groups by name (metrics without "/" come last, as "Model metrics"),
# so the headline keeps the section "test" and every other section sorts after it: test,
# test_batches, test_detail, test_sets, train, val. The pipeline's files keep their names.
HEADLINE = ("test/acc", "test/nll_calibrated", "test/ece_calibrated")
# scores that only mean something for a sparsemax output (exact zeros, sparsemax loss)
SPARSEMAX_ONLY = ("support", "single", "true_zero", "sparsemax_loss")
# not logged as values: per-class numbers and counts go in tables (class names are text, not
# key parts), split sizes with the dataset input, the calibrate stage's copy of the temperature,
# and the final train/val accuracy and loss, which the curves of the same names end with
NOT_METRICS = ("counts/", "per_class/", "size/", "batches/")
CURVE_SCORES = ("acc", "nll", "sparsemax_loss")
DUPLICATES = (
    "calibration/temperature",
    *(f"{split}/{score}" for split in ("train", "val") for score in CURVE_SCORES),
)
RENAMED_SECTIONS = {"test": "test_detail", "conformal": "test_sets", "batch": "test_batches"}


def mlflow_name(key: str, output: str) -> str | None:
    """Return the MLflow name of the pipeline metric ``key`` (None: not a compared metric).

    ``output`` is the model's (``softmax`` | ``sparsemax``): a run carries only the scores
    that mean something for it.
    """
    if key.startswith(NOT_METRICS) or key in DUPLICATES:
        return None
    if key in HEADLINE or "/" not in key:
        return key
    section, rest = key.split("/", 1)
    if section == "test" and output != "sparsemax" and _base(rest) in SPARSEMAX_ONLY:
        return None
    return f"{RENAMED_SECTIONS.get(section, section)}/{rest}"


CURVE_NAMES = {"lr": "train/lr", "seconds": "train/epoch_seconds"}


def curve_name(column: str) -> str:
    """MLflow name of a curves.csv column: ``val/nll`` stays, ``lr`` -> ``train/lr``."""
    return CURVE_NAMES.get(column, column if "/" in column else f"train/{column}")


def _base(score: str) -> str:
    return score.removesuffix("_calibrated")


def mlflow_values(merged: dict[str, float], output: str) -> tuple[dict[str, float], dict[str, str]]:
    """Split pipeline metrics into (MLflow metrics, tags): flags (booleans) become tags.

    ``calibration/at_bound`` becomes the tag ``calibration.at_bound`` = ``true``/``false``:
    drawn as a metric it is a bar of 0.00 at the top of MLflow's chart view.
    """
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for key, value in merged.items():
        name = mlflow_name(key, output)
        if name is None:
            continue
        if isinstance(value, bool):
            tags[name.replace("/", ".")] = str(value).lower()
        else:
            metrics[name] = float(value)
    return metrics, tags


def split_sizes(data_report: dict[str, Any]) -> dict[str, str]:
    """``{"train": "55000", ...}`` from the data report: tags of the run's dataset input."""
    return {split: str(int(n)) for split, n in data_report.get("size", {}).items()}


def git_tags(cwd: Path | None = None) -> dict[str, str]:
    """Return the commit and whether code or config differ from it (``unknown`` outside git).

    ``params.yaml`` and ``dvc.lock`` do not count: every ``dvc exp run`` rewrites them (the
    ``-S`` overrides), and the params are logged anyway. A queued experiment's HEAD is its
    baseline commit, so commit + params identify the run.
    """
    commit = _git(["rev-parse", "HEAD"], cwd)
    pathspec = ["--", ".", ":(exclude)params.yaml", ":(exclude)dvc.lock"]
    status = _git(["status", "--porcelain", "--untracked-files=no", *pathspec], cwd)
    return {
        "git.commit": commit or "unknown",
        "git.dirty": "unknown" if status is None else str(bool(status)).lower(),
    }


def _git(args: list[str], cwd: Path | None) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def dvc_lock_tags(lock_path: str | Path = "dvc.lock") -> dict[str, str]:
    """Return ``dvc.<stage>.<out path>: md5`` for every stage output recorded in dvc.lock.

    DVC writes each stage's lock entry as soon as the stage ends, so when ``log`` runs the
    entries describe the outputs of this very execution.
    """
    path = Path(lock_path)
    if not path.is_file():
        return {}
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    return {
        f"dvc.{stage}.{out['path']}": str(out.get("md5", ""))
        for stage, entry in stages.items()
        for out in entry.get("outs", [])
    }


def data_tags(cfg: Config) -> dict[str, str]:
    """Return the sha256 of each raw data file (from the config DVC verified them against)."""
    files = cfg.to_dict()["data"]["files"]
    return {f"data.sha256.{key}": spec["sha256"] for key, spec in files.items()}


def batch_tags(paths: PathsConfig) -> dict[str, str]:
    """Which accepted batches the run trained on: names in order, and the manifest's sha256.

    The retrain job reads ``data.batches`` back from the champion's run to know which batches
    are new to it.
    """
    names = [entry.name for entry in load_manifest(paths.batch_manifest)]
    return {"data.batches": ",".join(names), "data.manifest_sha256": manifest_sha256(
        paths.batch_manifest) if names else ""}  # fmt: skip


def data_digest(cfg: Config) -> str:
    """Return one 32-hex digest of all data files (MLflow caps dataset digests at 36 chars)."""
    digests = [*data_tags(cfg).values(), batch_tags(cfg.paths)["data.manifest_sha256"]]
    joined = "".join(sorted(digests)).encode()
    return hashlib.sha256(joined).hexdigest()[:32]


LOCK_FILE = "requirements.lock"


def environment_freeze() -> str:
    """Return ``name==version`` of every installed distribution, sorted (``pip freeze``'s view).

    Same seed gives bit-identical weights only in the same environment (numpy, BLAS); logged
    beside each run so a difference can be traced to its cause.
    """
    names = {
        f"{d.metadata['Name']}=={d.version}"
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }
    return "\n".join(sorted(names, key=str.lower)) + "\n"


def environment_tags(freeze: str, root: Path) -> dict[str, str]:
    """Return the sha256 of the environment's freeze and of ``requirements.lock`` (if present)."""
    lock = root / LOCK_FILE
    return {
        "env.freeze_sha256": hashlib.sha256(freeze.encode()).hexdigest(),
        "env.lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else "",
    }


def artifact_files(paths: PathsConfig) -> dict[str, list[Path]]:
    """Return the files to attach, keyed by the artifact folder they go to."""
    reports = [
        paths.data_report,
        paths.train_metrics,
        paths.train_curves,
        paths.calibration_metrics,
        paths.eval_metrics,
        paths.per_class,
        paths.conformal_report,
        paths.batch_metrics,
        paths.reliability_uncalibrated,
        paths.reliability_calibrated,
        paths.confusion,
        paths.calibration,
        paths.conformal,
    ]
    pipeline = ["params.yaml", "dvc.yaml", "dvc.lock"]
    return {
        "reports": [Path(p) for p in reports if Path(p).is_file()],
        "reports/figures": sorted(Path(paths.figures_dir).glob("*.png")),
        "pipeline": [Path(p) for p in pipeline if Path(p).is_file()],
        "data": [Path(p) for p in [paths.batch_manifest] if Path(p).is_file()],
    }


def _existing(path: str | Path) -> Path:
    """Return ``path`` if it exists, else fail with the stage that makes it."""
    if not Path(path).is_file():
        raise DataError(f"{path} not found: run `dvc repro` so the earlier stages write it")
    return Path(path)


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."
