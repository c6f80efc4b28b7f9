"""calibrate: data/prepared (val), models/model.npz
-> models/calibration.json, models/conformal.json, reports/calibration.json (DVC metrics).

The validation split is cut in two, stratified by class (``conformal.holdout``, seeded by
``data.split_seed``): one temperature is fitted on the first part (Guo et al. 2017) by the
NLL, or by the Brier score for a sparsemax model, or kept at T = 1 for ``calibration=none``;
the split conformal predictor (``conformal.*``) is fitted on the calibrated probabilities of
the second part, which neither the model nor T saw, so its coverage guarantee holds.
"""

import numpy as np

from mnist_softmax.atomic import write_json
from mnist_softmax.config import Config
from mnist_softmax.data.splits import load_split, split_path
from mnist_softmax.evaluation.calibration import calibrate_model
from mnist_softmax.evaluation.conformal_file import save_conformal
from mnist_softmax.model.model_file import load_model
from mnist_softmax.stage import log, run_stage

# the config keys this stage reads: exactly its params: in dvc.yaml (tests/test_dvc_yaml.py)
PARAMS = ("calibration", "conformal", "data.split_seed", "evaluation.n_bins", "evaluation.binning")


def main(cfg: Config) -> None:
    model = load_model(cfg.paths.model)
    val = load_split(split_path(cfg.paths.prepared_dir, "val"))
    fitted = calibrate_model(model, val, cfg)
    result, sets = fitted.result, fitted.conformal
    write_json(cfg.paths.calibration, result.to_params())
    write_json(cfg.paths.calibration_metrics, result.to_metrics())
    save_conformal(cfg.paths.conformal, sets)
    log.info("T = %.4f (%d val images): %s %.4f -> %.4f, ECE %.4f -> %.4f; conformal %s%s at "
             "alpha %g on %d held-out images: threshold %s", result.temperature,
             fitted.n_temperature, result.criterion, result.loss, result.loss_calibrated,
             result.ece, result.ece_calibrated, sets.method, " (mondrian)" if sets.mondrian
             else "", sets.alpha, fitted.n_heldout, np.round(sets.thresholds(), 4))  # fmt: skip


if __name__ == "__main__":
    run_stage("calibrate", main, PARAMS)
