"""Split conformal prediction sets: "a 3 or a 5, at 95%", with a finite-sample guarantee.

The one implementation used by calibrate (fit), evaluate (coverage), the pyfunc and
``predict`` (serving), the explorer (any alpha) and retrain (coverage on new batches).

A conformity score ``s(x, k)`` says how unusual class ``k`` is for image ``x`` (higher: less
likely). On ``n`` held-out images that neither the model nor its temperature saw, the scores
of the true classes are sorted; the threshold ``q`` is their ``k``-th smallest value with
``k = ceil((n + 1)(1 - alpha))`` (``inf`` when ``k > n``), and the set of a new image is
``{k : s(x, k) <= q}``. If the held-out images and the new one are exchangeable, the set holds
the true class with probability at least ``1 - alpha`` (Vovk et al. 2005; Angelopoulos and
Bates 2021, "A gentle introduction to conformal prediction"), marginally over the draw of the
held-out images and the new image, not for each image or each class.

The ``k``-th order statistic is taken directly from the sorted scores: ``np.quantile(...,
ceil((n+1)(1-alpha))/n, method="higher")``, the usual idiom, lands one order statistic higher
whenever ``k (n - 1) / n`` is not an integer (conservative, larger sets); MAPIE takes the same
``k``-th value as here (``method="lower"``), and a test checks our sets equal MAPIE's.

Scores (``METHODS``), all deterministic (no randomization, so a served set is reproducible):

- ``lac`` (least ambiguous set-valued classifier, Sadinle et al. 2019): ``1 - p_k``. The
  smallest sets on average; a set may be empty when no class is likely enough.
- ``aps`` (adaptive prediction sets, Romano et al. 2020): the probability mass of the classes
  ranked at or above ``k``. Sets grow with the image's uncertainty; never empty.
- ``raps`` (regularized APS, Angelopoulos et al. 2021, "Uncertainty sets for image classifiers
  using conformal prediction"): APS plus ``lam * max(0, rank_k - k_reg)`` (rank from 1), which
  penalizes long tails of unlikely classes.

``mondrian`` (class-conditional, Vovk 2012): one threshold per true class, from the held-out
images of that class only, so the guarantee holds for each class separately (at the price of
larger sets for the hard classes). A class with fewer than ``1/alpha - 1`` held-out images gets
``q = inf``: it is in every set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

METHODS = ("lac", "aps", "raps")


def conformity_scores(proba: np.ndarray, method: str, *, lam: float, k_reg: int) -> np.ndarray:
    """Return the score of every class as the candidate label (see the module docstring).

    ``lam`` and ``k_reg`` are RAPS's (``conformal.lam``, ``conformal.k_reg``), unused otherwise.

    proba : ndarray of shape (n_samples, n_classes); returns the same shape, float64.
    """
    proba = np.asarray(proba, dtype=np.float64)
    if method == "lac":
        return 1.0 - proba
    if method not in METHODS:
        raise ValueError(f"unknown conformal method {method!r} (allowed: {' | '.join(METHODS)})")
    order = np.argsort(-proba, axis=1, kind="stable")  # ties keep the class order
    cumulative = np.cumsum(np.take_along_axis(proba, order, axis=1), axis=1)
    if method == "raps":
        rank = np.arange(1, proba.shape[1] + 1)
        cumulative = cumulative + lam * np.maximum(0, rank - k_reg)
    scores = np.empty_like(cumulative)
    np.put_along_axis(scores, order, cumulative, axis=1)
    return scores


def threshold(sorted_scores: np.ndarray, alpha: float) -> float:
    """Return the ``ceil((n + 1)(1 - alpha))``-th smallest score, ``inf`` if there are too few.

    sorted_scores : ndarray of shape (n,), ascending (the held-out true-class scores)
    """
    n = len(sorted_scores)
    k = math.ceil((n + 1) * (1.0 - alpha) - 1e-12)  # 1e-12: (n+1)(1-alpha) exact in decimal
    return math.inf if k > n else float(sorted_scores[k - 1])


@dataclass(frozen=True)
class Conformal:
    """A fitted split-conformal predictor: the sorted held-out scores and how to make sets.

    ``scores`` holds one ascending array: of all held-out images, or (``mondrian``) one per
    class in class order. Keeping them (not one threshold) lets any ``alpha`` be served.
    """

    method: str
    alpha: float
    lam: float
    k_reg: int
    mondrian: bool
    scores: tuple[np.ndarray, ...]

    def thresholds(self, alpha: float | None = None) -> np.ndarray:
        """Return the threshold of each class, shape (n_classes,) (or (1,) when not mondrian)."""
        a = self.alpha if alpha is None else alpha
        return np.array([threshold(s, a) for s in self.scores])

    def sets(self, proba: np.ndarray, alpha: float | None = None) -> np.ndarray:
        """Return the prediction sets as a boolean mask of shape (n_samples, n_classes)."""
        return conformity_scores(
            proba, self.method, lam=self.lam, k_reg=self.k_reg
        ) <= self.thresholds(alpha)


def fit_conformal(
    proba: np.ndarray,
    y: np.ndarray,
    *,
    method: str,
    alpha: float,
    lam: float,
    k_reg: int,
    mondrian: bool,
) -> Conformal:
    """Fit on held-out calibrated probabilities (n_samples, n_classes) and labels (n_samples,)."""
    proba, y = np.asarray(proba), np.asarray(y)
    if len(y) == 0 or len(y) != len(proba):
        raise ValueError(f"need held-out images with labels, got {proba.shape} and {y.shape}")
    true = np.take_along_axis(
        conformity_scores(proba, method, lam=lam, k_reg=k_reg), y[:, None], 1
    )[:, 0]
    groups = [true[y == c] for c in range(proba.shape[1])] if mondrian else [true]
    return Conformal(method, float(alpha), float(lam), int(k_reg), bool(mondrian),
                     tuple(np.sort(g) for g in groups))  # fmt: skip


def set_names(mask: np.ndarray, proba: np.ndarray, names: list[str]) -> list[list[str]]:
    """Return each set as a list of class names, most probable first (possibly empty)."""
    order = np.argsort(-np.asarray(proba), axis=1, kind="stable")
    return [[names[k] for k in row if keep[k]] for row, keep in zip(order, mask, strict=True)]


def holdout_mask(y: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Return a stratified random mask of about ``share`` of each class's images.

    The calibrate stage fits T on the rest and the conformal scores on these, so the held-out
    scores are exchangeable with the test images' given the model and T.
    """
    mask = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        mask[members[: round(share * len(members))]] = True
    return mask
