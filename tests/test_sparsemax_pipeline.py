"""A sparsemax model through the real stages: train -> calibrate -> evaluate -> log -> pyfunc.

The stage scripts run as DVC runs them (one subprocess each, reading params.yaml in a scratch
folder) on the real MNIST files, then the log stage registers the model in a throwaway sqlite
MLflow store and the registered pyfunc is loaded back and asked for probabilities.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, copy_project, run, stage_env

from mnist_softmax.config import load_config
from mnist_softmax.data.splits import load_split, split_path
from mnist_softmax.evaluation.reliability import brier_score
from mnist_softmax.evaluation.temperature import load_temperature
from mnist_softmax.model.model_file import load_model

pytestmark = pytest.mark.slow
STAGES = ("fetch", "preprocess", "train", "calibrate", "evaluate", "log")
REGISTERED = "mnist-sparsemax-test"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, shared_mnist: Path) -> Path:
    """Compose ``model=sparsemax`` (3 SGD epochs) and run every stage; return the folder."""
    root = tmp_path_factory.mktemp("sparsemax-pipeline")
    (root / "params").symlink_to(REPO / "params")
    store = f"sqlite:///{root / 'mlflow.db'}"
    env = stage_env(shared_mnist.as_uri())
    overrides = ["model=sparsemax", "optimizer.epochs=3", "evaluation.bootstrap_samples=50",
                 f"tracking.uri='{store}'", "tracking.experiment_name=sparsemax-tests",
                 f"tracking.registered_model={REGISTERED}"]  # fmt: skip
    run([sys.executable, str(REPO / "pipeline" / "compose.py"), *overrides], root, env)
    for name in STAGES:
        run([sys.executable, str(REPO / "pipeline" / f"{name}.py")], root, env)
    return root


def _json(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def test_stage_outputs_describe_a_sparse_model(pipeline: Path):
    cfg = load_config(pipeline / "params.yaml")
    paths = cfg.paths
    model = load_model(pipeline / paths.model)
    assert cfg.model.output == model.output == "sparsemax"
    train = _json(pipeline, paths.train_metrics)
    assert set(train["val"]) == {"acc", "sparsemax_loss"} and train["val"]["acc"] > 0.9
    curves = pd.read_csv(pipeline / paths.train_curves)
    assert {"train/sparsemax_loss", "val/sparsemax_loss"} <= set(curves.columns)
    calibration = _json(pipeline, paths.calibration_metrics)
    assert set(calibration["val"]) == {"acc", "brier", "brier_calibrated", "ece", "ece_calibrated"}
    assert calibration["val"]["brier_calibrated"] <= calibration["val"]["brier"]
    test = _json(pipeline, paths.eval_metrics)["test"]
    for key in ("brier", "ece", "ece_ci_low", "sparsemax_loss", "true_zero", "support", "single"):
        assert key in test and f"{key.replace('_ci_low', '')}_calibrated" in test
    assert 0 < test["true_zero_calibrated"] < 0.1 and "nll_calibrated" not in test  # NLL is inf
    assert 1 < test["support_calibrated"] < 3 and 0.3 < test["single_calibrated"] < 1
    figures = pipeline / paths.figures_dir
    assert sorted(p.name for p in figures.iterdir()) == sorted(
        f"{n}.png"
        for n in ("reliability", "confusion", "curves", "weights", "mistakes", "prediction_sets")
    )


def test_logged_run_and_registered_pyfunc_serve_exact_zeros(pipeline: Path):
    import mlflow

    from mnist_softmax.tracking.registry import score_version

    cfg = load_config(pipeline / "params.yaml")
    mlflow.set_tracking_uri(cfg.tracking.uri)
    run_ = mlflow.search_runs(experiment_names=["sparsemax-tests"], output_format="list")[0]
    assert run_.data.params["model.output"] == "sparsemax"
    metrics = run_.data.metrics
    assert "test_detail/support_calibrated" in metrics and "test/nll_calibrated" not in metrics
    assert "val/sparsemax_loss" in metrics
    version = run_.data.tags["registered_model_version"]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{REGISTERED}/{version}")
    test = load_split(split_path(pipeline / cfg.paths.prepared_dir, "test"))
    proba = pyfunc.predict(test.X).drop(columns=["label", "set"]).to_numpy()
    model = load_model(pipeline / cfg.paths.model)
    temperature = load_temperature(pipeline / cfg.paths.calibration)
    np.testing.assert_array_equal(proba, model.predict_proba(test.X, temperature))
    assert (proba == 0).mean() > 0.7 and np.allclose(proba.sum(axis=1), 1.0)
    evaluated = _json(pipeline, cfg.paths.eval_metrics)["test"]
    assert np.mean(proba.argmax(axis=1) == test.y) == evaluated["acc"]
    # evaluate ran in another process: its float32 logits may round differently there (seen
    # under load, ~2e-8 relative), so agreement to 1e-6 as for the served probabilities
    assert brier_score(proba, test.y) == pytest.approx(evaluated["brier_calibrated"], abs=1e-6)
    # the retrain job scores it with the same formulas; its infinite NLL is left out, not inf
    scores = score_version(REGISTERED, version, test, cfg)
    ece = pytest.approx(evaluated["ece_calibrated"])
    assert scores == {"test/acc": evaluated["acc"], "test/ece_calibrated": ece}


def test_dvc_exp_run_selects_sparsemax_with_one_override(tmp_path: Path, file_mirror: str):
    """`dvc exp run -S model=sparsemax` in a fresh project: DVC's Hydra composes the group."""
    env = stage_env(file_mirror)
    project = copy_project(tmp_path / "project", env, epochs=3)
    run(["dvc", "exp", "run", "-S", "model=sparsemax"], project, env, timeout=900)
    assert load_model(project / "models" / "model.npz").output == "sparsemax"
    test = _json(project, "reports/metrics.json")["test"]
    assert test["acc"] > 0.9 and test["support_calibrated"] < 3
    assert "sparsemax" in run(["dvc", "exp", "show", "--json"], project, env).stdout
