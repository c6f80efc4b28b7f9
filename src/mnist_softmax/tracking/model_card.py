"""What a person reads in the MLflow UI: run and model descriptions, per-class tables.

Pure text and DataFrames (no mlflow import); :mod:`mnist_softmax.tracking.run_logging` sends
them. Per-class numbers go in as tables, not metrics: about 70 of them per run would bury the
20-30 metrics people compare (the Compare page picked ``counts/test/0`` as its first).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mnist_softmax.config import Config

MODEL_DESCRIPTION = (
    "Multinomial softmax regression (NumPy) on MNIST handwritten digits, with its pixel "
    "scaler and a fitted temperature. Input: raw pixels 0..255, 784 per image (28x28, light "
    "ink on black, MNIST-normalised: `mnist-softmax predict` does that for photos). Output: "
    "the calibrated probability of each class and `label`. Each version's description is its "
    "model card; the `champion` alias marks the one in use."
)


def run_description(metrics: dict[str, float], exp_name: str) -> str:
    """Return one line: the key result and where the run came from."""
    origin = f"DVC experiment {exp_name}" if exp_name else "dvc repro in the workspace"
    return (
        f"test acc {metrics.get('test/acc', float('nan')):.4f}, calibrated NLL "
        f"{metrics.get('test/nll_calibrated', float('nan')):.4f}, ECE "
        f"{metrics.get('test/ece_calibrated', float('nan')):.4f} "
        f"(T = {metrics.get('temperature', float('nan')):.3f}); {origin}"
    )


def version_description(cfg: Config, metrics: dict[str, float], data: dict[str, str]) -> str:
    """Return the model card of a registered version (markdown)."""
    checksums = "\n".join(
        f"  - `{k.split('.')[-1]}`: sha256 `{v[:16]}...`" for k, v in data.items()
    )
    ci = (metrics.get("test/ece_calibrated_ci_low"), metrics.get("test/ece_calibrated_ci_high"))
    interval = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if None not in ci else ""
    optimizer = cfg.optimizer.__class__.__name__.removesuffix("Config").lower()
    return f"""**Softmax regression on {cfg.data.name}**, optimizer {optimizer}, seed {cfg.seed}.

- Data: {cfg.data.name} (train split minus {cfg.data.val_size} validation images, split seed \
{cfg.data.split_seed}); files verified by checksum:
{checksums}
- Test metrics (10,000 images): accuracy {metrics.get("test/acc", float("nan")):.4f}, \
calibrated NLL {metrics.get("test/nll_calibrated", float("nan")):.4f}, calibrated ECE \
{metrics.get("test/ece_calibrated", float("nan")):.4f}{interval}, \
Brier {metrics.get("test/brier_calibrated", float("nan")):.4f}.
- Temperature T = {metrics.get("temperature", float("nan")):.4f}, fitted on the validation split.
- Intended use: reading single handwritten digits 0-9 that look like MNIST's (one digit per \
image, centred, MNIST-normalised).
- Limits: a linear model (about 7% of test digits wrong); letters, several digits or no digit \
still get a confident-looking class; photos must be normalised first (`mnist-softmax predict`).
"""


def tables(
    per_class: dict[str, dict[str, float]],
    counts: dict[str, dict[str, int]],
    confusion_csv: str | Path,
    conformal_json: str | Path | None = None,
) -> dict[str, pd.DataFrame]:
    """Return the per-class tables: scores, class counts per split, confusion matrix, and the
    prediction sets' coverage per class and per set size (``reports/conformal.json``).

    Built from the nested reports (``{class: {score: value}}`` and ``{split: {class: n}}``),
    never from flattened metric keys: a class name is text and may hold a "/" or anything
    else, so it only ever appears as a cell of the ``class`` column.
    """
    out = {}
    if per_class:
        out["per_class"] = _by_class(pd.DataFrame.from_dict(per_class, orient="index"))
    if counts:
        out["class_counts"] = _by_class(pd.DataFrame(counts))
    if Path(confusion_csv).is_file():
        pairs = pd.read_csv(confusion_csv, dtype=str, keep_default_na=False)
        matrix = pd.crosstab(pairs["actual"], pairs["predicted"]).reset_index()
        matrix.columns = [str(c) for c in matrix.columns]
        out["confusion"] = matrix
    if conformal_json is not None and Path(conformal_json).is_file():
        report = json.loads(Path(conformal_json).read_text())
        by_size = pd.DataFrame.from_dict(report["per_size"], orient="index")
        out["set_coverage_class"] = _by_class(
            pd.DataFrame.from_dict(report["per_class"], orient="index")
        )
        out["set_coverage_size"] = by_size.rename_axis("set_size").reset_index()
    return out


def _by_class(frame: pd.DataFrame) -> pd.DataFrame:
    """Class names (the index) as the first column, score columns sorted by name."""
    frame = frame[sorted(frame.columns, key=str)]
    frame.index = frame.index.map(str)
    return frame.rename_axis("class").reset_index()
