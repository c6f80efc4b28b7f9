"""``mlflow models serve`` of a registered version answers what MLflow clients send.

One real server (``--env-manager local``) on a free loopback port for the whole module; real
MNIST test images in every request format MLflow documents; the served probabilities must
equal the evaluate stage's calibrated ones.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from conftest import stage_env
from shipped import evaluation_args
from tracking_fixtures import REGISTERED

from mnist_softmax.commands.ui import stop_server, wait_ready
from mnist_softmax.evaluation.conformal import set_names
from mnist_softmax.evaluation.conformal_file import load_conformal
from mnist_softmax.evaluation.evaluate import evaluate
from mnist_softmax.evaluation.temperature import load_temperature
from mnist_softmax.model.model_file import load_model

pytestmark = pytest.mark.slow
N = 40  # images per request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(logged_runs, tracking_store):
    """``mlflow models serve`` of the lr=0.1 version; yields (url, expected probabilities)."""
    cfg, logged, root = logged_runs[0.1]
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "--env-manager", "local",
           "-m", f"models:/{REGISTERED}/{logged.model_version}", "-h", "127.0.0.1",
           "-p", str(port), "-w", "1"]  # fmt: skip
    env = stage_env(MLFLOW_TRACKING_URI=tracking_store)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", timeout_s=120)
        files = (root / cfg.paths.model, root / cfg.paths.calibration, root / cfg.paths.conformal)
        yield f"http://127.0.0.1:{port}", files
    finally:
        stop_server(proc)
    assert proc.poll() is not None


@pytest.fixture(scope="module")
def images(mnist) -> tuple[np.ndarray, np.ndarray]:
    return mnist["test_images"][:N].reshape(N, 784), mnist["test_labels"][:N].astype(int)


def post(url: str, body: str, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/invocations", body.encode(), {"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def requests(X: np.ndarray) -> dict[str, tuple[str, str]]:
    """The same images in each format MLflow's scoring server documents."""
    ints = pd.DataFrame(X.astype(int), columns=[f"pixel{i}" for i in range(784)])
    floats = ints.astype(float)
    return {
        "dataframe_split int": (json.dumps({"dataframe_split": ints.to_dict("split")}), "json"),
        "dataframe_records float": (
            json.dumps({"dataframe_records": floats.to_dict("records")}),
            "json",
        ),
        "csv int": (ints.to_csv(index=False), "csv"),
        "csv float": (floats.to_csv(index=False), "csv"),
        "inputs": (json.dumps({"inputs": X.tolist()}), "json"),
        "instances float": (json.dumps({"instances": (X / 1.0).tolist()}), "json"),
    }


def test_every_request_format_returns_evaluates_probabilities_the_label_and_set(server, images):
    url, (model_path, calibration_path, conformal_path) = server
    X, y = images
    model = load_model(model_path)
    names = [str(c) for c in model.class_names]
    temperature = load_temperature(calibration_path)
    expected = evaluate(
        model.logits(X).astype(np.float64),
        y,
        temperature,
        names,
        np.random.default_rng(0),
        **evaluation_args(bootstrap_samples=0),
    ).proba_calibrated
    sets = set_names(load_conformal(conformal_path, 10).sets(expected), expected, names)
    for name, (body, kind) in requests(X).items():
        status, answer = post(url, body, f"application/{kind}" if kind == "json" else "text/csv")
        assert status == 200, (name, answer)
        rows = pd.DataFrame(answer["predictions"])
        np.testing.assert_allclose(rows[names].to_numpy(), expected, atol=1e-6, err_msg=name)
        assert rows["label"].tolist() == [names[k] for k in expected.argmax(axis=1)], name
        assert rows["set"].tolist() == sets, name  # JSON arrays of class names


def test_bad_pixels_get_400_with_the_reason(server, images):
    url, _ = server
    X, _ = images
    too_bright = json.dumps({"inputs": (X[:2].astype(int) + 300).tolist()})
    status, answer = post(url, too_bright, "application/json")
    assert status == 400 and "0..255" in answer["message"]
    short = json.dumps({"inputs": X[:2, :700].tolist()})
    status, answer = post(url, short, "application/json")
    assert status == 400 and "(n, 784)" in answer["message"]
