"""Coverage of prediction sets on labelled images: the numbers evaluate, bench and retrain report.

``coverage`` is the share of images whose set holds the true class (the guarantee promises
at least ``1 - alpha`` on average); ``mean_set_size`` says what that coverage costs. The
shares of sets of size 0, 1 and 2+ say how often the model is silent, sure, or hesitant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_softmax.evaluation.conformal import Conformal

if TYPE_CHECKING:  # matplotlib only for the figure: retrain's scoring imports this module too
    from matplotlib.figure import Figure

SIZE_BUCKETS = ("0", "1", "2", "3+")  # rows of the per-size table
CURVE_ALPHAS = np.array([0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3])  # the figure's alpha axis


def coverage_metrics(mask: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Return the DVC metrics of sets ``mask`` (n_samples, n_classes) against labels ``y``.

    Keys: ``coverage``, ``mean_set_size``, ``size_0``, ``size_1``, ``size_2_or_more``.
    """
    mask, y = np.asarray(mask, dtype=bool), np.asarray(y)
    size = mask.sum(axis=1)
    covered = mask[np.arange(len(y)), y]
    return {
        "coverage": float(covered.mean()),
        "mean_set_size": float(size.mean()),
        "size_0": float(np.mean(size == 0)),
        "size_1": float(np.mean(size == 1)),
        "size_2_or_more": float(np.mean(size >= 2)),
    }


def coverage_tables(mask: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Return coverage per true class and per set size (``reports/conformal.json``).

    ``per_class``: class name -> {coverage, mean_set_size, n}; ``per_size``: size bucket
    (``SIZE_BUCKETS``) -> {coverage, share, n} (coverage null for an empty bucket).
    """
    mask, y = np.asarray(mask, dtype=bool), np.asarray(y)
    size = mask.sum(axis=1)
    covered = mask[np.arange(len(y)), y]
    per_class = {
        name: {"coverage": _mean(covered[y == c]), "mean_set_size": _mean(size[y == c]),
               "n": int(np.sum(y == c))}
        for c, name in enumerate(names)
    }  # fmt: skip
    bucket = np.minimum(size, len(SIZE_BUCKETS) - 1)
    per_size = {
        label: {"coverage": _mean(covered[bucket == b]), "share": float(np.mean(bucket == b)),
                "n": int(np.sum(bucket == b))}
        for b, label in enumerate(SIZE_BUCKETS)
    }  # fmt: skip
    return {"per_class": per_class, "per_size": per_size}


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def alpha_curve(
    sets_at: Callable[[float], np.ndarray], y: np.ndarray, alphas: np.ndarray
) -> dict[str, list[float]]:
    """Coverage and mean set size for each alpha; ``sets_at(alpha)`` returns the set mask."""
    rows = [coverage_metrics(sets_at(float(a)), y) for a in alphas]
    return {"alpha": [float(a) for a in alphas],
            "coverage": [r["coverage"] for r in rows],
            "mean_set_size": [r["mean_set_size"] for r in rows]}  # fmt: skip


def build_sets_figure(
    tables: dict[str, Any], curve: dict[str, list[float]], alpha: float
) -> Figure:
    """Two panels: share and coverage per set size; coverage and mean size against alpha."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.0, 4.5), dpi=100, layout="constrained")
    ax_size, ax_alpha = fig.subplots(1, 2)
    per_size = tables["per_size"]
    x = np.arange(len(SIZE_BUCKETS))
    ax_size.bar(x, [per_size[b]["share"] for b in SIZE_BUCKETS], 0.6, label="share of images")
    cov = [per_size[b]["coverage"] for b in SIZE_BUCKETS]
    ax_size.plot(x, [np.nan if c is None else c for c in cov], "o-", color="C3",
                 label="coverage within the size")  # fmt: skip
    ax_size.axhline(1 - alpha, color="grey", linestyle=":", label=f"1 - alpha = {1 - alpha:.2f}")
    ax_size.set(xticks=x, xticklabels=SIZE_BUCKETS, xlabel="set size", ylim=(0, 1.05),
                title="Test sets by size")  # fmt: skip
    ax_size.legend(loc="center right", fontsize="small")
    alphas = np.asarray(curve["alpha"])
    ax_alpha.plot(1 - alphas, curve["coverage"], "o-", label="test coverage")
    ax_alpha.plot(1 - alphas, 1 - alphas, ":", color="grey", label="target 1 - alpha")
    ax_alpha.set(xlabel="1 - alpha", ylabel="coverage", title="Coverage and set size by alpha")
    sizes = ax_alpha.twinx()
    sizes.plot(1 - alphas, curve["mean_set_size"], "s--", color="C2", label="mean set size")
    sizes.set(ylabel="mean set size")
    ax_alpha.legend(loc="upper left", fontsize="small")
    sizes.legend(loc="lower right", fontsize="small")
    return fig


def coverage_report(
    conformal: Conformal, proba: np.ndarray, y: np.ndarray, names: list[str]
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Return the per-class/per-size tables and the alpha curve of the sets (the test metrics
    are :func:`~mnist_softmax.evaluation.evaluate.evaluate_model`'s).

    The curve spans alpha 0.01-0.30 (``CURVE_ALPHAS``), so the figure shows what another
    alpha would cost.
    """
    mask = conformal.sets(proba)
    tables = coverage_tables(mask, y, names)
    tables |= {"method": conformal.method, "mondrian": conformal.mondrian, "alpha": conformal.alpha}
    curve = alpha_curve(lambda a: conformal.sets(proba, a), y, CURVE_ALPHAS)
    return tables, curve
