"""The drift report of new batches: how the data arriving differs from what the model learnt on.

Three signals, each for a different failure:

- labels: a chi-square test of independence between source (new vs training pool) and class.
  A small p-value says the classes arrive in other proportions (a new site, a sampling change);
  accuracy averaged over classes then moves even if the model reads every class as well as before.
- ink: mean pixel intensity and share of inked pixels per image, with a two-sample KS test on
  the per-image intensity. A shift points at another scanner, pen or preprocessing.
- confidence: the champion's top probability on the new images against the test split. A
  model that is less sure on the new data is the first sign it reads it worse, before labels
  are checked.
- coverage: the share of each new batch's held-out slice whose champion prediction set holds
  the true class. The conformal guarantee (coverage >= 1 - alpha) assumes new images are
  exchangeable with the held-out validation images; coverage below 1 - alpha on a batch is
  the sign that they are not: a drift signal that, unlike the others, is measured against a
  promise the model made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from mnist_softmax.errors import DataError
from mnist_softmax.evaluation.charts import DPI, save_figure

DRIFT_SIZE = (15.0, 4.5)  # inches: 1500 x 450 px
INK_LEVEL = 127  # a pixel above it counts as ink


def _per_image(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean intensity in [0, 1] and inked share of each image (float32: the pool is 60k x 784)."""
    intensity = X.mean(axis=1, dtype=np.float32) / 255.0
    ink = (X > INK_LEVEL).mean(axis=1, dtype=np.float32)
    return intensity, ink


def _check(X: np.ndarray, y: np.ndarray, n_classes: int, what: str) -> None:
    if len(X) == 0:
        raise DataError(f"drift report: the {what} has no images")
    if len(X) != len(y):
        raise DataError(f"drift report: the {what} has {len(X)} images but {len(y)} labels")
    if y.min() < 0 or y.max() >= n_classes:
        raise DataError(f"drift report: a {what} label is outside 0..{n_classes - 1}")


def _label_drift(new_y: np.ndarray, pool_y: np.ndarray, names: list[str]) -> dict[str, Any]:
    table = np.stack([np.bincount(y, minlength=len(names)) for y in (new_y, pool_y)])
    observed = table[:, table.sum(axis=0) > 0]  # a class absent from both says nothing
    if observed.shape[1] < 2:
        chi2, p_value, dof = 0.0, 1.0, 0
    else:
        chi2, p_value, dof, _ = stats.chi2_contingency(observed)
    shares = table / table.sum(axis=1, keepdims=True)
    per_class = {
        key: dict(zip(names, (int(v) if key.startswith("counts") else float(v) for v in row),
                      strict=True))
        for key, row in zip(("counts_new", "counts_pool", "share_new", "share_pool"),
                            (*table, *shares), strict=True)
    }  # fmt: skip
    return {**per_class, "chi2": float(chi2), "p_value": float(p_value), "dof": int(dof)}


def _ink_drift(new_X: np.ndarray, pool_X: np.ndarray) -> dict[str, float]:
    (new_i, new_ink), (pool_i, pool_ink) = _per_image(new_X), _per_image(pool_X)
    ks = stats.ks_2samp(new_i, pool_i)
    values = {
        "mean_intensity_new": new_i.mean(),
        "mean_intensity_pool": pool_i.mean(),
        "ink_fraction_new": new_ink.mean(),
        "ink_fraction_pool": pool_ink.mean(),
        "ks_statistic": ks.statistic,
        "ks_p_value": ks.pvalue,
    }
    values["intensity_shift"] = values["mean_intensity_new"] - values["mean_intensity_pool"]
    values["ink_shift"] = values["ink_fraction_new"] - values["ink_fraction_pool"]
    return {key: float(value) for key, value in values.items()}


def _confidence_drift(new: np.ndarray, test: np.ndarray, n_bins: int) -> dict[str, Any]:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    hist_new, hist_test = (np.histogram(c, bins=edges)[0] / len(c) for c in (new, test))
    return {"mean_new": float(np.mean(new)), "mean_test": float(np.mean(test)),
            "shift": float(np.mean(new) - np.mean(test)), "bin_edges": edges.tolist(),
            "hist_new": hist_new.tolist(), "hist_test": hist_test.tolist()}  # fmt: skip


def coverage_drift(per_batch: dict[str, dict[str, float]], alpha: float) -> dict[str, Any]:
    """Flag each batch whose set coverage is below ``1 - alpha`` (the guarantee's promise).

    ``per_batch``: batch name -> ``{"n", "coverage", "mean_set_size"}`` on its held-out slice.
    ``drift`` is true when any batch falls short. A small slice falls short by chance too
    (coverage of n images has a standard error of about ``sqrt(alpha (1 - alpha) / n)``), so
    each batch also says by how many standard errors (``shortfall_se``).
    """
    target = 1.0 - alpha
    batches = {}
    for name, scores in per_batch.items():
        se = float(np.sqrt(alpha * (1 - alpha) / max(scores["n"], 1)))
        batches[name] = {**scores, "drift": bool(scores["coverage"] < target),
                         "shortfall_se": float((target - scores["coverage"]) / se)}  # fmt: skip
    drift = any(b["drift"] for b in batches.values())
    return {"alpha": float(alpha), "target": target, "batches": batches, "drift": drift}


def drift_report(
    new_X: np.ndarray,
    new_y: np.ndarray,
    pool_X: np.ndarray,
    pool_y: np.ndarray,
    class_names: list[str],
    confidence_new: np.ndarray | None = None,
    confidence_test: np.ndarray | None = None,
    n_bins: int = 10,
    coverage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON drift report of a new batch (pixels (n, 784) uint8) against the training pool.

    ``confidence_*`` are the champion's top probabilities on the new images and the test split;
    without them (no champion yet) the report's ``confidence`` is None. ``coverage`` is the
    :func:`coverage_drift` of the champion's prediction sets (None: no champion, or one
    registered before prediction sets).
    """
    _check(new_X, new_y, len(class_names), "new batch")
    _check(pool_X, pool_y, len(class_names), "training pool")
    both = confidence_new is not None and confidence_test is not None
    return {
        "n_new": len(new_y),
        "n_pool": len(pool_y),
        "labels": _label_drift(np.asarray(new_y), np.asarray(pool_y), list(class_names)),
        "ink": _ink_drift(new_X, pool_X),
        "confidence": _confidence_drift(confidence_new, confidence_test, n_bins) if both else None,
        "coverage": coverage,
    }


def build_drift_figure(report: dict[str, Any]) -> Figure:
    """Three panels: label shares, intensity and ink, champion confidence (new vs reference)."""
    fig = Figure(figsize=DRIFT_SIZE, dpi=DPI, layout="constrained")
    ax_labels, ax_ink, ax_conf = fig.subplots(1, 3, width_ratios=[2, 1, 2])
    labels, ink, conf = report["labels"], report["ink"], report["confidence"]
    names = list(labels["share_new"])
    x = np.arange(len(names))
    ax_labels.bar(x - 0.2, [labels["share_new"][n] for n in names], 0.4, label="new batch")
    ax_labels.bar(x + 0.2, [labels["share_pool"][n] for n in names], 0.4, label="training pool")
    ax_labels.set(xticks=x, xticklabels=names, ylabel="share of images",
                  title=f"Labels: chi-square p {_p(labels['p_value'])}")  # fmt: skip
    _legend_above_bars(ax_labels)
    keys = ("mean_intensity", "ink_fraction")
    ax_ink.bar(np.arange(2) - 0.2, [ink[f"{k}_new"] for k in keys], 0.4, label="new batch")
    ax_ink.bar(np.arange(2) + 0.2, [ink[f"{k}_pool"] for k in keys], 0.4, label="training pool")
    title = f"Ink: shift {ink['intensity_shift']:+.3f}, KS p {_p(ink['ks_p_value'])}"
    ax_ink.set(xticks=range(2), xticklabels=["mean intensity", "ink fraction"], title=title)
    _legend_above_bars(ax_ink)
    if conf is None:
        ax_conf.text(0.5, 0.5, "no champion: confidence not measured", ha="center", va="center")
        ax_conf.set(xticks=[], yticks=[])
    else:
        edges = np.asarray(conf["bin_edges"])
        ax_conf.stairs(conf["hist_new"], edges, label="new batch", linewidth=2)
        ax_conf.stairs(conf["hist_test"], edges, label="test split", linewidth=2)
        ax_conf.set(xlabel="champion's top probability", ylabel="share of images",
                    title=f"Confidence: mean shift {conf['shift']:+.3f}")  # fmt: skip
        ax_conf.legend(loc="upper left")
    fig.suptitle(f"Drift: new batch (n={report['n_new']}) vs training pool (n={report['n_pool']})"
                 f"{_coverage_line(report.get('coverage'))}")  # fmt: skip
    return fig


def _coverage_line(coverage: dict[str, Any] | None) -> str:
    """The suptitle's second line: each batch's set coverage against 1 - alpha, drift flagged."""
    if not coverage:
        return ""
    parts = [f"{name} {b['coverage']:.3f}{' DRIFT' if b['drift'] else ''}"
             for name, b in coverage["batches"].items()]  # fmt: skip
    return f"\nprediction-set coverage (target >= {coverage['target']:.2f}): " + ", ".join(parts)


def _legend_above_bars(ax) -> None:
    """Leave headroom over the tallest bar so the legend never hides one."""
    ax.set_ylim(top=1.3 * max(bar.get_height() for bar in ax.patches))
    ax.legend(loc="upper right", ncols=2, fontsize="small")


def _p(value: float) -> str:
    """A p-value as text: below float precision, 0.0 would read as certainty."""
    return "< 1e-300" if value < 1e-300 else f"= {value:.3g}"


def plot_drift(report: dict[str, Any], path: str | Path) -> Path:
    """Write the drift figure as a PNG (atomically)."""
    return save_figure(build_drift_figure(report), path)
