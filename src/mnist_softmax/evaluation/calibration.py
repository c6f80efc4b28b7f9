"""The calibrate stage's work in one entry, :func:`calibrate_model`: the stage and the fast sweep
both call it (and :func:`~mnist_softmax.evaluation.evaluate.evaluate_model` for the evaluate
stage), so a swept config's T, sets and test metrics are those its DVC experiment writes; no
config field is copied by hand into a call.

Split conformal prediction needs held-out images that neither the model nor the temperature
saw; the validation split is the only labelled data outside training and test, so it is cut in
two, stratified by class and seeded by ``data.split_seed``: T is fitted on the first part, the
conformal predictor on the calibrated probabilities of the second (``conformal.holdout`` of
the images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_softmax.config import Config
from mnist_softmax.data.splits import Split
from mnist_softmax.evaluation.conformal import Conformal, fit_conformal, holdout_mask
from mnist_softmax.evaluation.temperature import CalibrationResult, calibrate
from mnist_softmax.model.model_file import SoftmaxModel
from mnist_softmax.model.outputs import probabilities


@dataclass(frozen=True)
class Calibrated:
    """The fitted temperature (with its validation metrics) and conformal predictor."""

    result: CalibrationResult
    conformal: Conformal
    n_temperature: int  # validation images T was fitted on
    n_heldout: int  # validation images the conformal scores came from


def calibrate_model(model: SoftmaxModel, val: Split, cfg: Config) -> Calibrated:
    """Fit T and the conformal predictor on the two parts of the validation split.

    Reads ``calibration.*``, ``conformal.*``, ``data.split_seed``, ``evaluation.n_bins`` and
    ``evaluation.binning`` from ``cfg``.
    """
    cal, conf, output, y = cfg.calibration, cfg.conformal, model.output, val.y
    z = np.asarray(model.logits(val.X), dtype=np.float64)
    held = holdout_mask(y, conf.holdout, np.random.default_rng(cfg.data.split_seed))
    result = calibrate(z[~held], y[~held], method=cal.method, t_min=cal.t_min, t_max=cal.t_max,
                       n_bins=cfg.evaluation.n_bins, binning=cfg.evaluation.binning,
                       output=output)  # fmt: skip
    proba = probabilities(z[held], output, result.temperature)
    conformal = fit_conformal(proba, y[held], method=conf.method, alpha=conf.alpha,
                              lam=conf.lam, k_reg=conf.k_reg, mondrian=conf.mondrian)  # fmt: skip
    return Calibrated(result, conformal, int((~held).sum()), int(held.sum()))
