"""``mnist-softmax predict``: real files through a real model, the exit code, the default model."""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from shipped import conformal_args
from tracking_fixtures import REGISTERED

from mnist_softmax.commands import predict
from mnist_softmax.config import compose, config_from_container, to_yaml
from mnist_softmax.data.digit_image import normalize_digit
from mnist_softmax.data.scaler import Scaler
from mnist_softmax.data.splits import Split
from mnist_softmax.evaluation.conformal import fit_conformal, set_names
from mnist_softmax.evaluation.conformal_file import load_conformal, save_conformal
from mnist_softmax.model.model_file import save_model
from mnist_softmax.model.training import train

REPO = Path(__file__).resolve().parents[1]
TEMPERATURE = 1.25
_spec = importlib.util.spec_from_file_location("render", REPO / "scripts/render_accuracy.py")
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)


@pytest.fixture(scope="module")
def test_digits(mnist) -> Split:
    return Split(mnist["test_images"], mnist["test_labels"].astype(np.int64))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, mnist) -> Path:
    """A folder with params.yaml, models/model.npz (trained on 20k real digits) and its T."""
    root = tmp_path_factory.mktemp("predict")
    X = mnist["train_images"][:22000].reshape(22000, 784)
    y = mnist["train_labels"][:22000].astype(np.int64)
    cfg = config_from_container(compose(REPO / "params", ["optimizer.epochs=4"]))
    fit, val = Split(X[:20000], y[:20000]), Split(X[20000:], y[20000:])
    result = train(fit, val, Scaler.fit(fit.X, "standardize", 25.5), cfg)
    (root / "models").mkdir()
    save_model(root / cfg.paths.model, result.model)
    (root / cfg.paths.calibration).write_text(json.dumps({"temperature": TEMPERATURE}))
    held_out = result.model.predict_proba(val.X, TEMPERATURE)  # scored at the served T
    save_conformal(root / cfg.paths.conformal, fit_conformal(held_out, val.y, **conformal_args()))
    (root / "params.yaml").write_text(to_yaml(compose(REPO / "params")))
    return root


def _predict(root: Path, *args: str) -> int:
    with contextlib.chdir(root):
        return predict.main(list(args))


def test_renders_of_test_digits_read_nearly_as_well_as_the_raw_digits(workspace, test_digits):
    """Large, off-centre, dark-on-light scans lose at most 2 points of accuracy to MNIST's own."""
    from mnist_softmax.model.model_file import load_model

    model = load_model(workspace / "models/model.npz")
    X, y = test_digits.X[:1000], test_digits.y[:1000]
    rng = np.random.default_rng(0)
    renders = np.stack([normalize_digit(render.render_scan(d, rng)) for d in X])
    raw_acc = np.mean(model.predict_proba(X).argmax(axis=1) == y)
    render_acc = np.mean(model.predict_proba(renders).argmax(axis=1) == y)
    assert raw_acc > 0.88
    assert render_acc > raw_acc - 0.02


def test_mixed_files_predict_the_good_ones_and_exit_3(workspace, test_digits, tmp_path, capsys):
    png, jpg = tmp_path / "seven.png", tmp_path / "two.jpg"
    rng = np.random.default_rng(1)
    Image.fromarray(render.render_scan(test_digits.X[0], rng)).save(png)
    Image.fromarray(255 - render.render_scan(test_digits.X[1], rng)).convert("RGB").save(jpg)
    npy = tmp_path / "five.npy"
    np.save(npy, test_digits.X[:5])
    bad = tmp_path / "bad.npy"
    np.save(bad, test_digits.X[:5, :10])
    empty = tmp_path / "empty.png"
    empty.touch()
    files = [png, bad, jpg, empty, npy]
    code = _predict(workspace, "--format", "json", *map(str, files))
    out, err = capsys.readouterr()
    assert code == 3
    records = json.loads(out)
    assert [(r["file"], r["index"]) for r in records] == [
        (str(png), None), (str(jpg), None), *[(str(npy), i) for i in range(5)]
    ]  # fmt: skip
    assert [r["label"] for r in records] == ["7", "2", "7", "2", "1", "0", "4"]
    for r in records:
        assert r["probability"] == max(r["probabilities"].values())
        assert sum(r["probabilities"].values()) == pytest.approx(1.0)
        assert r["top3"][0]["label"] == r["label"] and len(r["top3"]) == 3
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == [
        f"[predict] error: {bad}: array of shape (5, 10, 28), expected (n, 28, 28) or (n, 784)",
        f"[predict] error: {empty}: empty file",
    ]


def test_probabilities_are_the_models_calibrated_ones_in_every_format(
    workspace, test_digits, tmp_path, capsys
):
    from mnist_softmax.model.model_file import load_model

    gz = tmp_path / "t.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + np.array([50, 28, 28], ">u4").tobytes()
                                 + test_digits.X[:50].tobytes()))  # fmt: skip
    expected = load_model(workspace / "models/model.npz").predict_proba(
        test_digits.X[:50], TEMPERATURE
    )
    assert _predict(workspace, "--format", "csv", str(gz)) == 0
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert list(table.columns[:5]) == ["file", "index", "label", "probability", "top3"]
    np.testing.assert_allclose(table[[f"p_{k}" for k in range(10)]], expected, rtol=1e-12)
    assert table["index"].tolist() == list(range(50))
    assert _predict(workspace, "--temperature", "1", str(gz)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "index", "label", "probability", "top3"]
    first = lines[1].split()
    uncalibrated = load_model(workspace / "models/model.npz").predict_proba(test_digits.X[:1])
    assert first[:3] == [str(gz), "0", "7"] and float(first[3]) == pytest.approx(
        uncalibrated.max(), abs=6e-5
    )


def test_sets_are_json_arrays_of_names_in_csv_and_json(workspace, test_digits, tmp_path, capsys):
    """The CSV cell holds the set as JSON text, the JSON a real array; both are the model's."""
    from mnist_softmax.model.model_file import load_model

    np.save(tmp_path / "x.npy", test_digits.X[:300])
    P = load_model(workspace / "models/model.npz").predict_proba(test_digits.X[:300], TEMPERATURE)
    conformal = load_conformal(workspace / "models/conformal.json", 10)
    expected = set_names(conformal.sets(P), P, [str(k) for k in range(10)])
    assert {len(s) for s in expected} >= {1, 2}  # one sure and some hesitant images
    assert _predict(workspace, "--format", "csv", str(tmp_path / "x.npy")) == 0
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), dtype={"set": str})
    assert [json.loads(cell) for cell in table["set"]] == expected
    assert _predict(workspace, "--format", "json", str(tmp_path / "x.npy")) == 0
    assert [r["set"] for r in json.loads(capsys.readouterr().out)] == expected
    assert (
        _predict(workspace, "--temperature", "2", "--format", "json", str(tmp_path / "x.npy")) == 0
    )
    assert "set" not in json.loads(capsys.readouterr().out)[0]  # another T: no guarantee, no set


def test_names_with_separators_survive_the_csv_cell():
    names = ['a, "b"', "7/8: x", "ü ß", ""]
    proba = pd.DataFrame([[0.5, 0.3, 0.2, 0.0]], columns=names)
    proba["label"], proba["set"] = names[0], [names[:3]]
    batch = predict.DigitBatch("f.npy", np.zeros((1, 784), np.uint8), True)
    table = predict.predictions([batch], proba)
    cell = pd.read_csv(pd.io.common.StringIO(predict.render(table, "csv")))["set"][0]
    assert json.loads(cell) == names[:3]
    assert json.loads(predict.render(table, "json"))[0]["set"] == names[:3]


def test_a_corrupt_or_missing_conformal_file_is_one_error(workspace, tmp_path, capsys):
    import shutil

    copy = tmp_path / "ws"
    shutil.copytree(workspace, copy)
    np.save(tmp_path / "x.npy", np.zeros((1, 784), np.uint8))
    (copy / "models/conformal.json").write_text('{"method": "lac", "alpha": 0.05}')
    assert _predict(copy, str(tmp_path / "x.npy")) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "conformal.json is not a conformal predictor" in err[0]
    (copy / "models/conformal.json").unlink()
    assert _predict(copy, str(tmp_path / "x.npy")) == 3
    assert "conformal.json not found" in capsys.readouterr().err


def test_bad_temperature_and_missing_model_fail_with_one_line(workspace, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 784), np.uint8))
    with pytest.raises(SystemExit) as exit_info:
        _predict(workspace, "--temperature", "0", str(tmp_path / "x.npy"))
    assert exit_info.value.code == 2 and "not a number > 0" in capsys.readouterr().err
    code = _predict(workspace, "--model", str(tmp_path / "nope.npz"), str(tmp_path / "x.npy"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and "nope.npz not found" in err[0]


@pytest.mark.slow
def test_default_model_is_champion_then_newest_version_then_the_file(
    workspace, logged_runs, tracking_store, tmp_path, capsys, monkeypatch
):
    """The registered versions give the numbers of their own model files (one pyfunc path)."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri sets it

    cfg, logged, root = logged_runs[0.05]  # the newer of the two versions
    np.save(tmp_path / "x.npy", np.arange(784 * 3).reshape(3, 784) % 256)
    params = tmp_path / "params.yaml"
    params.write_text(
        to_yaml(compose(REPO / "params", [f"tracking.uri='{tracking_store}'",
                                          f"tracking.registered_model={REGISTERED}"]))
    )  # fmt: skip

    def run_predict(*args: str) -> tuple[str, list[dict]]:
        assert _predict(workspace, "--params", str(params), "--format", "json", *args) == 0
        out, err = capsys.readouterr()
        return _model_line(err), json.loads(out)

    used, newest = run_predict(str(tmp_path / "x.npy"))
    assert used == f"models:/{REGISTERED}/{logged.model_version}"
    _, from_file = run_predict("--model", str(root / cfg.paths.model), str(tmp_path / "x.npy"))
    assert [r["probabilities"] for r in newest] == [r["probabilities"] for r in from_file]
    client = mlflow.MlflowClient(tracking_store)
    client.set_registered_model_alias(REGISTERED, "champion", "1")
    try:
        used, _ = run_predict(str(tmp_path / "x.npy"))
    finally:
        client.delete_registered_model_alias(REGISTERED, "champion")
    assert used == f"models:/{REGISTERED}@champion"
    local = tmp_path / "no-store.yaml"
    local.write_text(to_yaml(compose(REPO / "params", [f"tracking.uri='sqlite:///{tmp_path}/x'"])))
    assert _predict(workspace, "--params", str(local), str(tmp_path / "x.npy")) == 0
    assert _model_line(capsys.readouterr().err) == "models/model.npz"
    assert not (tmp_path / "x").exists()  # asking did not create a store


def _model_line(stderr: str) -> str:
    """The model predict says it used (its ``[predict] model <source>`` line)."""
    return next(line.split()[-1] for line in stderr.splitlines() if "] model " in line)
