"""A small model trained on real MNIST, its files, and the explorer app that serves it.

Training on 10,000 of the shared MNIST images for 3 epochs takes about a second and gives a
model that reads digits (about 0.9 validation accuracy), which is what the explorer's tests need:
real weights, a fitted temperature and a test split, without running the whole pipeline. A test
module binds the fixtures with ``name = explorer_fixtures.name`` (conftest belongs to the lead).
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import stage_env
from shipped import conformal_args, temperature_args

from mnist_softmax.config import compose, config_from_container
from mnist_softmax.data.idx import gunzip, parse_idx
from mnist_softmax.data.scaler import Scaler
from mnist_softmax.data.splits import Split, save_split, split_path
from mnist_softmax.evaluation.conformal import fit_conformal
from mnist_softmax.evaluation.conformal_file import save_conformal
from mnist_softmax.evaluation.temperature import fit_temperature
from mnist_softmax.model.model_file import save_model
from mnist_softmax.model.training import train

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "mnist"


@dataclass(frozen=True)
class TrainedFiles:
    """Where the fixture wrote the model, its calibration and the prepared test split."""

    model: Path
    calibration: Path
    prepared_dir: Path
    temperature: float
    test: Split


def _read(name: str, n: int) -> np.ndarray:
    path = MNIST / name
    return parse_idx(gunzip(path.read_bytes(), str(path)), str(path))[:n]


@pytest.fixture(scope="session")
def trained_files(tmp_path_factory: pytest.TempPathFactory) -> TrainedFiles:
    """Train on 10k real MNIST images; write models/model.npz, calibration.json,
    conformal.json and a test split."""
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real MNIST files not found in {MNIST}")
    X = _read("train-images-idx3-ubyte.gz", 12000).reshape(12000, -1)
    y = _read("train-labels-idx1-ubyte.gz", 12000).astype(np.int64)
    fit_split, val = Split(X[:10000], y[:10000]), Split(X[10000:], y[10000:])
    cfg = config_from_container(compose(REPO / "params", ["optimizer.epochs=3"]))
    scaler = Scaler.fit(fit_split.X, "standardize", 25.5, (28, 28))  # deskews, as shipped
    model = train(fit_split, val, scaler, cfg).model
    temperature = fit_temperature(model.logits(val.X), val.y, **temperature_args())

    root = tmp_path_factory.mktemp("explorer")
    (root / "models").mkdir()
    save_model(root / "models" / "model.npz", model)
    calibration = root / "models" / "calibration.json"
    calibration.write_text(json.dumps({"method": "temperature", "temperature": temperature}))
    held_out = model.predict_proba(val.X, temperature)  # a test fixture: T's images, too
    save_conformal(
        root / "models" / "conformal.json", fit_conformal(held_out, val.y, **conformal_args())
    )
    n_test = 2000
    test = Split(
        _read("t10k-images-idx3-ubyte.gz", n_test).reshape(n_test, -1),
        _read("t10k-labels-idx1-ubyte.gz", n_test).astype(np.int64),
    )
    save_split(split_path(root / "data" / "prepared", "test"), test)
    return TrainedFiles(
        root / "models" / "model.npz", calibration, root / "data" / "prepared", temperature, test
    )


@pytest.fixture(scope="session")
def explorer_app(trained_files: TrainedFiles):
    """The Flask app serving the trained model, built as ``mnist-softmax explore`` builds it."""
    from mnist_softmax.commands.explore import load_digit_model
    from mnist_softmax.explorer.app import create_app
    from mnist_softmax.tracking.model_source import ModelSource, load_model_source

    cfg = config_from_container(compose(REPO / "params"))
    source = load_model_source(str(trained_files.model), cfg.tracking, cfg.paths)
    assert isinstance(source, ModelSource)
    return create_app(load_digit_model(source, trained_files.prepared_dir))


def start_explorer(cwd: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """Start ``mnist-softmax explore --port 0 [args]`` in ``cwd``; return it and its URL.

    The environment names no MLflow store, so without ``--model`` the command resolves the
    workspace's ``models/model.npz`` (``cwd`` holds no ``mlflow/mlflow.db``).
    """
    cmd = [sys.executable, "-m", "mnist_softmax.cli", "explore", "--port", "0",
           "--params", str(REPO / "params.yaml"), *args]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=cwd, env=stage_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("Explorer: http://127.0.0.1:"):
        proc.kill()
        pytest.fail(f"explore did not start: {line!r}\n{proc.communicate(timeout=10)[1]}")
    return proc, line.split()[1]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """Stop the explorer with ``sig``; return its exit code (kill it if it hangs)."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="session")
def explorer_url(trained_files: TrainedFiles) -> Iterator[str]:
    """The real ``mnist-softmax explore`` command serving the trained workspace's model."""
    proc, url = start_explorer(trained_files.model.parents[1])
    yield url
    stop(proc)
