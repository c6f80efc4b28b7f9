"""The registered pyfunc: calibrated probabilities from raw pixels, as evaluate computes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shipped import evaluation_args
from tracking_fixtures import REGISTERED

from mnist_softmax.evaluation.conformal_file import load_conformal
from mnist_softmax.evaluation.evaluate import evaluate
from mnist_softmax.evaluation.temperature import load_temperature
from mnist_softmax.model.model_file import load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(logged_runs):
    """The lr=0.1 model loaded back from the registry, with the files it was logged from."""
    import mlflow

    cfg, logged, root = logged_runs[0.1]
    mlflow.set_tracking_uri(cfg.tracking.uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{REGISTERED}/{logged.model_version}")
    model = load_model(root / cfg.paths.model)
    return pyfunc, model, load_temperature(root / cfg.paths.calibration)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(64, 784), dtype=np.uint8)


def test_registry_model_predicts_the_models_calibrated_probabilities(served, images):
    pyfunc, model, temperature = served
    assert temperature != 1.0
    out = pyfunc.predict(images)
    names = [str(c) for c in model.class_names]
    assert list(out.columns) == [*names, "label", "set"]
    proba = out[names]
    assert out["label"].tolist() == [names[k] for k in proba.to_numpy().argmax(axis=1)]
    np.testing.assert_allclose(proba.to_numpy(), model.predict_proba(images, temperature),
                               rtol=1e-5, atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(proba.to_numpy().sum(axis=1), 1.0, rtol=1e-12)


def test_the_set_column_holds_the_conformal_sets_of_the_logged_file(served, images, logged_runs):
    """Each row's set is a list of class names, most probable first, as conformal.json says."""
    pyfunc, model, _ = served
    cfg, _, root = logged_runs[0.1]
    conformal = load_conformal(root / cfg.paths.conformal, 10)
    out = pyfunc.predict(images)
    names = [str(c) for c in model.class_names]
    P = out[names].to_numpy()
    mask = conformal.thresholds() >= 1 - P  # lac: the class is in when 1 - p <= q
    sizes = [len(s) for s in out["set"]]
    assert sizes == mask.sum(axis=1).tolist() and len(set(sizes)) > 1  # sets of several sizes
    for row, keep, p in zip(out["set"], mask, P, strict=True):
        assert isinstance(row, list) and set(row) == {names[k] for k in np.flatnonzero(keep)}
        assert [p[names.index(n)] for n in row] == sorted(p[keep], reverse=True)


def test_dataframe_of_784_columns_and_28x28_images_give_the_same_answer(served, images):
    pyfunc, _, _ = served
    expected = pyfunc.predict(images)
    frame = pd.DataFrame(images, columns=[f"pixel{i}" for i in range(784)])
    pd.testing.assert_frame_equal(pyfunc.predict(frame), expected)
    direct = pyfunc.unwrap_python_model().predict(None, images.reshape(-1, 28, 28))
    pd.testing.assert_frame_equal(direct, expected)


def test_served_probabilities_reproduce_evaluate_accuracy_exactly_and_nll(served, images):
    pyfunc, model, temperature = served
    y = np.arange(len(images)) % 10
    result = evaluate(
        model.logits(images),
        y,
        temperature,
        [str(c) for c in model.class_names],
        np.random.default_rng(0),
        **evaluation_args(bootstrap_samples=0),
    )
    proba = pyfunc.predict(images).drop(columns=["label", "set"]).to_numpy()
    test = result.metrics["test"]
    assert np.mean(proba.argmax(axis=1) == y) == test["acc"]
    nll = -np.mean(np.log(proba[np.arange(len(y)), y]))
    assert nll == pytest.approx(test["nll_calibrated"], abs=1e-6)


def test_logged_model_holds_plain_files_and_explicit_requirements(logged_runs):
    import mlflow

    cfg, logged, _ = logged_runs[0.1]
    mlflow.set_tracking_uri(cfg.tracking.uri)
    uri = f"models:/{REGISTERED}/{logged.model_version}"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    files = {p.name for p in local.rglob("*")}
    assert {"model.npz", "calibration.json", "conformal.json", "pyfunc.py", "MLmodel"} <= files
    assert not any(name.endswith((".pkl", ".pickle")) for name in files)
    requirements = (local / "requirements.txt").read_text()
    assert "numpy==" in requirements and "mlflow==" in requirements
    assert "signature" in (local / "MLmodel").read_text()


def test_served_features_equal_the_features_training_builds(served, images):
    """One scaling: the pyfunc builds from raw pixels the very features training fed the weights."""
    pyfunc, model, _ = served
    served_model = pyfunc.unwrap_python_model().model
    assert served_model.scaler.deskew_shape == (28, 28)  # the served model deskews
    trained_on = model.scaler.transform(images, model.W.dtype)  # what training.train() does
    np.testing.assert_array_equal(served_model.features(images), trained_on)
    np.testing.assert_array_equal(served_model.features(images.reshape(-1, 28, 28)), trained_on)


def test_a_model_without_deskewing_still_serves_raw_pixel_features(logged_runs, images):
    import mlflow

    cfg, logged, root = logged_runs[0.05]
    mlflow.set_tracking_uri(cfg.tracking.uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{REGISTERED}/{logged.model_version}")
    model = load_model(root / cfg.paths.model)
    served_model = pyfunc.unwrap_python_model().model
    assert model.scaler.deskew_shape is None and served_model.scaler.deskew_shape is None
    raw = (images - model.scaler.mean) / model.scaler.scale
    np.testing.assert_allclose(served_model.features(images), raw, rtol=1e-5, atol=1e-5)
    proba = pyfunc.predict(images).drop(columns=["label", "set"]).to_numpy()
    temperature = load_temperature(root / cfg.paths.calibration)
    np.testing.assert_allclose(
        proba, model.predict_proba(images, temperature), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize(
    "shape_of",
    [
        lambda X: X.astype(np.int64),
        lambda X: X.astype(np.float32).reshape(-1, 28, 28),
        lambda X: {"pixels": X.tolist()},
        lambda X: pd.DataFrame({"image": list(X)}),
        lambda X: pd.DataFrame(X / 1.0),
    ],
)
def test_pixel_rows_accept_what_clients_send(images, shape_of):
    from mnist_softmax.tracking.pyfunc import pixel_rows

    np.testing.assert_array_equal(pixel_rows(shape_of(images), 784), images)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (np.zeros((2, 783)), r"shape \(n, 784\)"),
        (np.zeros((0, 784)), r"got \(0, 784\)"),
        (np.full((1, 784), -1), "0..255"),
        (np.full((1, 784), np.inf), "0..255"),
        (np.full((1, 784), "x"), "numbers 0..255"),
    ],
)
def test_pixel_rows_refuse_with_the_reason(bad, reason):
    from mnist_softmax.tracking.pyfunc import pixel_rows

    with pytest.raises(ValueError, match=reason):
        pixel_rows(bad, 784)
