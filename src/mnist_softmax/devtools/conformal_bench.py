"""``mnist-softmax bench-conformal``: prediction sets of every method side by side, one run.

On the workspace's trained model (``make run`` first) and the same calibrated probabilities:
this project's split conformal sets (lac, aps, raps, and lac/aps per class), MAPIE's
``SplitConformalClassifier`` (the library anchor, on the very same probabilities through a
prefit pass-through estimator), and the support of a sparsemax model (the seed's sparse
alternative: the classes with p > 0, trained and temperature-fitted here as the pipeline
would). Held-out images are the calibrate stage's: the conformal half of the validation
split (``conformal.holdout``, ``data.split_seed``); T is fitted on the other half. Prints a
markdown table of test coverage, mean set size and the shares of sizes 0, 1 and 2+.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from mnist_softmax.config import Config, compose, config_from_container
from mnist_softmax.data.scaler import load_scaler, scaler_path
from mnist_softmax.data.splits import Split, load_split, split_path
from mnist_softmax.devtools.bench import print_table
from mnist_softmax.evaluation.conformal import fit_conformal, holdout_mask
from mnist_softmax.evaluation.conformal_report import coverage_metrics
from mnist_softmax.evaluation.temperature import fit_temperature, load_temperature
from mnist_softmax.model.model_file import load_model
from mnist_softmax.model.outputs import probabilities

log = logging.getLogger(__name__)

OURS = {  # table label -> (method, mondrian)
    "lac": ("lac", False),
    "aps": ("aps", False),
    "raps": ("raps", False),
    "lac, mondrian": ("lac", True),
    "aps, mondrian": ("aps", True),
}
MAPIE_SCORES = ("lac", "aps")


class GivenProba(ClassifierMixin, BaseEstimator):
    """A prefit classifier whose features are its probabilities: MAPIE sees our exact numbers."""

    def __init__(self, n_classes: int = 10) -> None:
        self.n_classes = n_classes

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> GivenProba:
        self.classes_ = np.arange(self.n_classes)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X).argmax(axis=1)


def mapie_sets(
    proba_cal: np.ndarray, y_cal: np.ndarray, proba_test: np.ndarray, alpha: float, score: str
) -> np.ndarray:
    """Return MAPIE's split conformal sets (n_test, n_classes) for the given probabilities."""
    from mapie.classification import SplitConformalClassifier

    estimator = GivenProba(proba_cal.shape[1]).fit(proba_cal, y_cal)
    mapie = SplitConformalClassifier(
        estimator, confidence_level=1 - alpha, prefit=True, conformity_score=score,
        random_state=0,  # aps randomizes its held-out scores: the same table every run
    )  # fmt: skip
    mapie.conformalize(proba_cal, y_cal)
    _, sets = mapie.predict_set(proba_test)
    return sets[:, :, 0]


def comparison(cfg: Config, params_dir: Path) -> pd.DataFrame:
    """Return one row per method: test coverage, mean set size and size shares."""
    prepared = cfg.paths.prepared_dir
    val, test = (load_split(split_path(prepared, s)) for s in ("val", "test"))
    held = holdout_mask(val.y, cfg.conformal.holdout, np.random.default_rng(cfg.data.split_seed))
    model = load_model(cfg.paths.model)
    T = load_temperature(cfg.paths.calibration)
    P_cal = probabilities(model.logits(val.X[held]).astype(np.float64), model.output, T)
    P_test = probabilities(model.logits(test.X).astype(np.float64), model.output, T)
    y_cal, alpha, c = val.y[held], cfg.conformal.alpha, cfg.conformal
    rows = {}
    for label, (method, mondrian) in OURS.items():
        fitted = fit_conformal(P_cal, y_cal, method=method, alpha=alpha, lam=c.lam,
                               k_reg=c.k_reg, mondrian=mondrian)  # fmt: skip
        rows[f"this project: {label}"] = coverage_metrics(fitted.sets(P_test), test.y)
    for score in MAPIE_SCORES:
        mask = mapie_sets(P_cal, y_cal, P_test, alpha, score)
        rows[f"MAPIE SplitConformalClassifier: {score}"] = coverage_metrics(mask, test.y)
    support = _sparsemax_support(cfg, params_dir, val, held, test)
    rows["sparsemax support (p > 0), calibrated T"] = coverage_metrics(support, test.y)
    table = pd.DataFrame(rows).T.rename_axis(f"method (alpha = {alpha:g})").reset_index()
    return table.rename(columns={"mean_set_size": "mean set size", "size_0": "size 0",
                                 "size_1": "size 1", "size_2_or_more": "size 2+"})  # fmt: skip


def _sparsemax_support(
    cfg: Config, params_dir: Path, val: Split, held: np.ndarray, test: Split
) -> np.ndarray:
    """Train the sparsemax config on the prepared splits; return its test support as sets."""
    from mnist_softmax.model.training import train

    sparse_cfg = config_from_container(compose(params_dir, ["model=sparsemax"]))
    train_split = load_split(split_path(cfg.paths.prepared_dir, "train"))
    scaler = load_scaler(scaler_path(cfg.paths.prepared_dir))
    model = train(train_split, val, scaler, sparse_cfg).model
    z = model.logits(val.X[~held]).astype(np.float64)
    T = fit_temperature(z, val.y[~held], t_min=sparse_cfg.calibration.t_min,
                        t_max=sparse_cfg.calibration.t_max, output="sparsemax")  # fmt: skip
    log.info("sparsemax model trained, T = %.4f (Brier on the T half)", T)
    return probabilities(model.logits(test.X).astype(np.float64), "sparsemax", T) > 0


def main(argv: list[str] | None = None) -> int:
    """Print the comparison table (markdown); ``--out`` also writes it, after a line saying
    when and where it was measured (``make bench-conformal``: docs/tables/bench-conformal.md)."""
    parser = argparse.ArgumentParser(prog="mnist-softmax bench-conformal", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (e.g. conformal.alpha=0.1)")
    parser.add_argument("--params", type=Path, default=Path("params"), help="Hydra config dir")
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    cfg = config_from_container(compose(args.params, args.overrides))
    print_table(comparison(cfg, args.params), args.out)
    return 0
