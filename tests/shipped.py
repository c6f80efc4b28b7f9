"""The shipped config groups as dataclasses, for tests that vary a few keys.

``params/`` is the only source of defaults (the schema has none), so a test that needs an
SGDConfig starts from the shipped one and replaces what it is about.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from mnist_softmax.config import Config, LBFGSConfig, SGDConfig, compose, config_from_container

REPO = Path(__file__).resolve().parents[1]


@cache
def shipped_config(*overrides: str) -> Config:
    """Compose ``params/`` with Hydra overrides and validate it (cached: Hydra costs ~0.2 s)."""
    return config_from_container(compose(REPO / "params", list(overrides)))


def sgd(**changes: object) -> SGDConfig:
    """The shipped ``optimizer=sgd`` group with ``changes`` applied (validated again)."""
    return replace(shipped_config().optimizer, **changes)


def lbfgs(**changes: object) -> LBFGSConfig:
    """The shipped ``optimizer=lbfgs`` group with ``changes`` applied (validated again)."""
    return replace(shipped_config("optimizer=lbfgs").optimizer, **changes)


def temperature_args(**changes: Any) -> dict[str, Any]:
    """``fit_temperature``'s keyword arguments from the shipped config (a softmax model)."""
    cal = shipped_config().calibration
    return {"t_min": cal.t_min, "t_max": cal.t_max, "output": "softmax", **changes}


def calibration_args(**changes: Any) -> dict[str, Any]:
    """``calibrate``'s keyword arguments as the calibrate stage passes them, shipped config."""
    cfg = shipped_config()
    shipped = {"method": cfg.calibration.method, "n_bins": cfg.evaluation.n_bins,
               "binning": cfg.evaluation.binning}  # fmt: skip
    return {**temperature_args(), **shipped, **changes}


def evaluation_args(**changes: Any) -> dict[str, Any]:
    """``evaluate``'s keyword arguments as the evaluate stage passes them, shipped config."""
    ev = shipped_config().evaluation
    shipped = {"n_bins": ev.n_bins, "binning": ev.binning, "bootstrap_samples":
               ev.bootstrap_samples, "ci_level": ev.ci_level, "output": "softmax"}  # fmt: skip
    return {**shipped, **changes}


def conformal_args(**changes: Any) -> dict[str, Any]:
    """``fit_conformal``'s keyword arguments from the shipped ``conformal`` group."""
    c = shipped_config().conformal
    return {"method": c.method, "alpha": c.alpha, "lam": c.lam, "k_reg": c.k_reg,
            "mondrian": c.mondrian, **changes}  # fmt: skip
