"""``models/conformal.json``: the fitted conformal predictor that travels with the model.

The calibrate stage writes it; evaluate, the pyfunc (an artifact beside ``model.npz`` and
``calibration.json``), ``predict``, the explorer and retrain read it. It holds the sorted
held-out scores, not only the threshold, so a set can be computed for any alpha (the
explorer's slider); ``threshold`` is written too, for people (``null`` means infinite: every
class is in every set). A file that is missing or does not hold what it should is one
DataError naming the file and the fix: a model must never serve a silently empty set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mnist_softmax.atomic import write_json
from mnist_softmax.errors import DataError
from mnist_softmax.evaluation.conformal import METHODS, Conformal

_FIX = "rerun `dvc repro calibrate`"


def conformal_to_dict(conformal: Conformal) -> dict[str, Any]:
    """Return the JSON content of a fitted predictor (plain types only)."""
    q = conformal.thresholds()
    return {
        "method": conformal.method,
        "alpha": conformal.alpha,
        "lam": conformal.lam,
        "k_reg": conformal.k_reg,
        "mondrian": conformal.mondrian,
        "n_heldout": int(sum(len(s) for s in conformal.scores)),
        "threshold": [None if math.isinf(v) else float(v) for v in q],
        "scores": [s.tolist() for s in conformal.scores],
    }


def save_conformal(path: str | Path, conformal: Conformal) -> None:
    """Write the predictor as sorted-key JSON, atomically."""
    write_json(path, conformal_to_dict(conformal))


def load_conformal(path: str | Path, n_classes: int) -> Conformal:
    """Read and check ``path``; raise DataError (one line) if it is missing or malformed."""
    if not Path(path).is_file():
        raise DataError(f"{path} not found: the model has no prediction sets; {_FIX}")
    try:
        data = json.loads(Path(path).read_text())
        return conformal_from_dict(data, n_classes)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DataError(f"{path} is not a conformal predictor ({exc}); {_FIX}") from None


def conformal_from_dict(data: dict[str, Any], n_classes: int) -> Conformal:
    """Build a checked :class:`Conformal`; raise ValueError/KeyError/TypeError on bad content."""
    method, alpha, mondrian = data["method"], float(data["alpha"]), data["mondrian"]
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {' | '.join(METHODS)}")
    if not 0 < alpha < 1 or not isinstance(mondrian, bool):
        raise ValueError(f"alpha={alpha!r} or mondrian={mondrian!r} out of range")
    scores = tuple(np.asarray(s, dtype=np.float64) for s in data["scores"])
    expected = n_classes if mondrian else 1
    if len(scores) != expected or any(s.ndim != 1 for s in scores):
        raise ValueError(f"{len(scores)} score lists, expected {expected}")
    if sum(len(s) for s in scores) == 0:
        raise ValueError("no held-out scores")
    if not all(np.isfinite(s).all() and (np.diff(s) >= 0).all() for s in scores):
        raise ValueError("scores must be finite and sorted ascending")
    lam, k_reg = float(data["lam"]), int(data["k_reg"])
    return Conformal(method, alpha, lam, k_reg, mondrian, scores)
