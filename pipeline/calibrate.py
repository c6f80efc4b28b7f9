"""calibrate: data/prepared (val), models/model.npz
-> models/calibration.json, reports/calibration.json (DVC metrics).

Fits one temperature on the validation split (Guo et al. 2017) by the NLL, or by the Brier
score for a sparsemax model, or keeps T = 1 for ``calibration=none``, and records that
criterion and the ECE before and after as DVC metrics.
"""

from mnist_softmax.atomic import write_json
from mnist_softmax.config import Config
from mnist_softmax.data.splits import load_split, split_path
from mnist_softmax.evaluation.temperature import calibrate
from mnist_softmax.model.model_file import load_model
from mnist_softmax.stage import log, run_stage

# the config keys this stage reads: exactly its params: in dvc.yaml (tests/test_dvc_yaml.py)
PARAMS = ("calibration", "evaluation.n_bins", "evaluation.binning")


def main(cfg: Config) -> None:
    model = load_model(cfg.paths.model)
    val = load_split(split_path(cfg.paths.prepared_dir, "val"))
    result = calibrate(
        model.logits(val.X),
        val.y,
        method=cfg.calibration.method,
        t_min=cfg.calibration.t_min,
        t_max=cfg.calibration.t_max,
        n_bins=cfg.evaluation.n_bins,
        binning=cfg.evaluation.binning,
        output=model.output,
    )
    write_json(cfg.paths.calibration, result.to_params())
    write_json(cfg.paths.calibration_metrics, result.to_metrics())
    log.info(
        "T = %.4f: val %s %.4f -> %.4f, ECE %.4f -> %.4f",
        result.temperature,
        result.criterion,
        result.loss,
        result.loss_calibrated,
        result.ece,
        result.ece_calibrated,
    )


if __name__ == "__main__":
    run_stage("calibrate", main, PARAMS)
