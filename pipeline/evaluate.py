"""evaluate: data/prepared (test), data/batches (held-out slices), models/model.npz,
models/calibration.json, models/conformal.json, reports/curves.csv -> reports/metrics.json
(DVC metrics, prediction sets under "conformal"), reports/per_class.json, reports/conformal.json
(set coverage per class and size), reports/batches.json,
reports/reliability_{uncalibrated,calibrated}.csv and reports/confusion.csv (DVC plots),
reports/figures/*.png (DVC image plots).
"""

from mnist_softmax.atomic import write_json
from mnist_softmax.config import Config
from mnist_softmax.data.splits import load_split, split_path
from mnist_softmax.evaluation.batch_scores import score_batches
from mnist_softmax.evaluation.charts import save_figure
from mnist_softmax.evaluation.conformal_file import load_conformal
from mnist_softmax.evaluation.conformal_report import build_sets_figure, coverage_report
from mnist_softmax.evaluation.evaluate import evaluate_model
from mnist_softmax.evaluation.figures import write_figures
from mnist_softmax.evaluation.temperature import load_temperature
from mnist_softmax.inbox.batch_store import load_batches
from mnist_softmax.model.curves import read_curves
from mnist_softmax.model.model_file import load_model
from mnist_softmax.stage import log, run_stage

# the config keys this stage reads: exactly its params: in dvc.yaml (tests/test_dvc_yaml.py)
PARAMS = ("seed", "evaluation")


def main(cfg: Config) -> None:
    paths, ev = cfg.paths, cfg.evaluation
    model = load_model(paths.model)
    test = load_split(split_path(paths.prepared_dir, "test"))
    names = [str(c) for c in model.class_names]
    temperature = load_temperature(paths.calibration)
    conformal = load_conformal(paths.conformal, len(names))
    result = evaluate_model(model, test, temperature, conformal, cfg)  # as the fast sweep does
    sets = result.metrics["conformal"]  # reports/metrics.json: {"conformal": {"coverage", ...}}
    reliability = {"uncalibrated": paths.reliability_uncalibrated,
                   "calibrated": paths.reliability_calibrated}  # fmt: skip
    tables, curve = coverage_report(conformal, result.proba_calibrated, test.y, names)
    result.write(paths.eval_metrics, paths.per_class, reliability, paths.confusion)
    write_json(paths.conformal_report, tables)
    save_figure(build_sets_figure(tables, curve, conformal.alpha),
                f"{paths.figures_dir}/prediction_sets.png")  # fmt: skip
    write_figures(result, model.W, tuple(model.image_shape), test.X,
                  read_curves(paths.train_curves), paths.figures_dir, ev.n_mistakes)  # fmt: skip
    batches = load_batches(paths.batches_dir, paths.batch_manifest)
    per_batch = score_batches(model, temperature, batches, ev.n_bins, ev.binning, conformal)
    write_json(paths.batch_metrics, per_batch)
    for name, scores in per_batch.items():
        log.info("batch %s (held-out slice, %d images): acc %.4f, set coverage %.4f", name,
                 scores["n"], scores["acc"], scores["coverage"])  # fmt: skip
    t = result.metrics["test"]
    nll = [f"{t[k]:.4f}" if k in t else "inf" for k in ("nll", "nll_calibrated")]  # sparsemax: inf
    log.info("test acc %.4f (%s): Brier %.4f -> %.4f, ECE %.4f -> %.4f, NLL %s -> %s, "
             "support %.2f (T = %.3f)", t["acc"], model.output, t["brier"], t["brier_calibrated"],
             t["ece"], t["ece_calibrated"], *nll, t["support_calibrated"], temperature)  # fmt: skip
    log.info("prediction sets (%s, alpha %g): coverage %.4f, mean size %.3f, sizes 0/1/2+ "
             "%.4f/%.4f/%.4f", conformal.method, conformal.alpha, *sets.values())  # fmt: skip


if __name__ == "__main__":
    run_stage("evaluate", main, PARAMS)
