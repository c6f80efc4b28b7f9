"""log: params.yaml, dvc.lock, models/{model.npz,calibration.json}, reports/* -> one MLflow run.

No outs, so DVC never restores it from its run cache: every `dvc repro` / `dvc exp run` that
changed anything (each queued experiment of a sweep too) logs one run with params, metrics,
curves, plots, tags, the dataset and the model, registered as a new version of
``tracking.registered_model``. A no-op `dvc repro` skips it: nothing new to log.
"""

from mnist_softmax.config import Config
from mnist_softmax.stage import log, run_stage
from mnist_softmax.tracking.run_logging import log_pipeline_run

# the config keys this stage reads: exactly its params: in dvc.yaml (tests/test_dvc_yaml.py)
PARAMS = (
    "seed",
    "data",
    "model",
    "optimizer",
    "calibration",
    "conformal",
    "evaluation",
    "tracking",
    "retrain",
)


def main(cfg: Config) -> None:
    logged = log_pipeline_run(cfg)
    log.info(
        "run %s: %d params, %d metrics, %s v%s",
        logged.run_id,
        logged.n_params,
        logged.n_metrics,
        cfg.tracking.registered_model,
        logged.model_version,
    )


if __name__ == "__main__":
    run_stage("log", main, PARAMS)
