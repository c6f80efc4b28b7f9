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
    values: dict[str, float], confusion_csv: str | Path, conformal_json: str | Path | None = None
) -> dict[str, pd.DataFrame]:
    """Return the per-class tables: scores, class counts per split, confusion matrix, and the
    prediction sets' coverage per class and per set size (``reports/conformal.json``).

    ``values`` holds ``per_class/<class>/<score>`` and ``counts/<split>/<class>`` entries.
    """
    out = {}
    for prefix, name, index_at in (("per_class/", "per_class", 1), ("counts/", "class_counts", 2)):
        rows = [[*k.split("/"), v] for k, v in values.items() if k.startswith(prefix)]
        if rows:
            frame = pd.DataFrame([(r[index_at], r[3 - index_at], r[3]) for r in rows])
            wide = frame.pivot(index=0, columns=1, values=2).reset_index()
            wide.columns = ["class", *map(str, wide.columns[1:])]
            out[name] = wide
    if Path(confusion_csv).is_file():
        pairs = pd.read_csv(confusion_csv, dtype=str)
        matrix = pd.crosstab(pairs["actual"], pairs["predicted"]).reset_index()
        matrix.columns = [str(c) for c in matrix.columns]
        out["confusion"] = matrix
    if conformal_json is not None and Path(conformal_json).is_file():
        report = json.loads(Path(conformal_json).read_text())
        for key, column in (("per_class", "class"), ("per_size", "set_size")):
            frame = pd.DataFrame.from_dict(report[key], orient="index")
            out[f"set_coverage_{key.removeprefix('per_')}"] = frame.rename_axis(
                column
            ).reset_index()
    return out
