"""Fake-but-valid pipeline outputs and a throwaway MLflow store for the tracking tests.

The files follow the formats of the common brief (model.npz, the JSON metrics, curves.csv, ...)
with small random contents, so the log stage can be tested without running the pipeline.
A test module binds the fixtures with ``tracking_store = tracking_fixtures.tracking_store`` (an
assignment, not an import, so ruff sees no redefinition); the shared ``conftest.py`` belongs to
the lead.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mnist_softmax.config import Config, compose, load_config, to_yaml
from mnist_softmax.data.scaler import Scaler
from mnist_softmax.evaluation.conformal import Conformal
from mnist_softmax.evaluation.conformal_file import save_conformal
from mnist_softmax.model.model_file import SoftmaxModel, save_model

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "tracking-tests"
REGISTERED = "mnist-softmax-test"


def _png_bytes() -> bytes:
    """Return a valid 1x1 grey PNG (enough for an artifact; no matplotlib needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


def write_fake_outputs(root: Path, store_uri: str, lr: float = 0.1, epochs: int = 3) -> Config:
    """Write params.yaml, dvc files, model, calibration and reports under ``root``.

    Metrics depend on ``lr`` so that two runs differ; returns the validated config.
    """
    overrides = [
        f"optimizer.lr={lr}",
        f"optimizer.epochs={epochs}",
        f"tracking.uri='{store_uri}'",
        f"tracking.experiment_name={EXPERIMENT}",
        f"tracking.registered_model={REGISTERED}",
    ]
    (root / "params.yaml").write_text(to_yaml(compose(REPO / "params", overrides)))
    shutil.copytree(REPO / "params", root / "params", dirs_exist_ok=True)  # run names: the diff
    cfg = load_config(root / "params.yaml")
    paths = cfg.paths
    with contextlib.chdir(root):
        for path in vars(paths).values():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(paths.figures_dir).mkdir(parents=True, exist_ok=True)
        # the lr=0.1 model deskews (as the shipped config does), the lr=0.05 one reads raw pixels
        save_model(paths.model, fake_model(seed=int(lr * 1000), deskew=lr == 0.1))
        temperature = 1.0 + lr
        Path(paths.calibration).write_text(
            json.dumps({"method": "temperature", "temperature": temperature})
        )
        # a real conformal predictor: scores spread so the sets of the fake model vary in size
        save_conformal(paths.conformal, Conformal("lac", 0.05, 0.01, 1, False,
                                                  (np.linspace(0.5, 0.95, 99),)))  # fmt: skip
        _write_reports(paths, lr, epochs, temperature)
        Path("dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
        lock = {"schema": "2.0", "stages": {
            "train": {"cmd": "python pipeline/train.py",
                      "outs": [{"path": paths.model, "hash": "md5", "md5": "a" * 32, "size": 1}]},
            "evaluate": {"cmd": "python pipeline/evaluate.py",
                         "outs": [{"path": paths.figures_dir, "md5": "b" * 32 + ".dir"}]},
        }}  # fmt: skip
        Path("dvc.lock").write_text(yaml.safe_dump(lock))
    return cfg


def fake_model(seed: int = 0, n_classes: int = 10, deskew: bool = False) -> SoftmaxModel:
    """Return a float32 model with random weights and a plausible pixel scaler."""
    rng = np.random.default_rng(seed)
    deskew_shape = (28, 28) if deskew else None
    return SoftmaxModel(
        W=rng.normal(0, 0.05, (784, n_classes)).astype(np.float32),
        b=rng.normal(0, 0.1, n_classes).astype(np.float32),
        class_names=np.array([str(i) for i in range(n_classes)]),
        scaler=Scaler(rng.uniform(0, 120, 784), rng.uniform(20, 100, 784), deskew_shape),
        image_shape=np.array([28, 28]),
        config_hash="0123456789abcdef",
    )


def _write_reports(paths, lr: float, epochs: int, temperature: float) -> None:
    acc = 0.9 + lr / 10
    counts = {"train": {"0": 5400, "1": 6100}, "val": {"0": 490, "1": 560}, "test": {"0": 980}}
    sizes = {split: sum(n.values()) for split, n in counts.items()}
    Path(paths.data_report).write_text(json.dumps({"batches": {}, "counts": counts, "size": sizes}))
    train = {
        "best_epoch": epochs, "epochs_run": epochs, "optimizer": "sgd", "train_seconds": 0.5,
        "peak_rss_mb": 300.0, "seconds_per_epoch": 0.03,
        "train": {"acc": acc, "nll": 0.3}, "val": {"acc": acc - 0.01, "nll": 0.31},
    }  # fmt: skip
    Path(paths.train_metrics).write_text(json.dumps(train))
    curves = pd.DataFrame({
        "epoch": range(1, epochs + 1),
        "train/nll": np.linspace(0.6, 0.3, epochs) + lr, "train/acc": np.linspace(0.8, acc, epochs),
        "val/nll": np.linspace(0.62, 0.31, epochs) + lr, "val/acc": np.linspace(0.8, acc, epochs),
        "lr": np.linspace(lr, 0.0, epochs), "seconds": np.full(epochs, 0.03),
    })  # fmt: skip
    curves.to_csv(paths.train_curves, index=False)
    Path(paths.calibration_metrics).write_text(json.dumps({
        "temperature": temperature, "at_bound": False, "nll_worse": False,
        "val": {"acc": acc - 0.01, "nll": 0.31, "nll_calibrated": 0.29, "ece": 0.02,
                "ece_calibrated": 0.01},
    }))  # fmt: skip
    test = {"acc": acc, "nll": 0.3, "nll_calibrated": 0.28 + lr / 100, "ece": 0.02,
            "ece_calibrated": 0.01, "brier": 0.1, "mce": 0.2, "support": 10.0}  # fmt: skip
    per_class = {"0": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 980}}
    sets = {"coverage": 0.95, "mean_set_size": 1.2, "size_0": 0.0, "size_1": 0.8,
            "size_2_or_more": 0.2}  # fmt: skip
    Path(paths.eval_metrics).write_text(
        json.dumps({"temperature": temperature, "test": test, "conformal": sets})
    )
    report = {"per_class": {"0": {"coverage": 0.95, "mean_set_size": 1.2, "n": 980}},
              "per_size": {"1": {"coverage": 0.96, "share": 0.8, "n": 784}}}  # fmt: skip
    Path(paths.conformal_report).write_text(json.dumps(report))
    Path(paths.per_class).write_text(json.dumps({"per_class": per_class}))
    reliability = {"bin": [0], "confidence": [0.5], "accuracy": [0.5], "count": [1]}
    for path in (paths.reliability_uncalibrated, paths.reliability_calibrated):
        pd.DataFrame(reliability).to_csv(path, index=False)
    pd.DataFrame({"actual": ["0"], "predicted": ["0"]}).to_csv(paths.confusion, index=False)
    for name in ("reliability", "confusion", "curves", "weights", "mistakes"):
        (Path(paths.figures_dir) / f"{name}.png").write_bytes(_png_bytes())


@pytest.fixture(scope="session")
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A sqlite MLflow store shared by the session (creating one costs about a second)."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{db}"


@pytest.fixture(scope="session")
def logged_runs(tmp_path_factory: pytest.TempPathFactory, tracking_store: str) -> dict:
    """Two runs logged from fake outputs with optimizer.lr 0.1 and 0.05: {lr: (cfg, run, dir)}.

    Session-scoped: each log takes seconds, and several test modules read the same runs.
    """
    from mnist_softmax.tracking.run_logging import log_pipeline_run

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("DVC_ROOT", raising=False)
        out = {}
        for lr, exp in ((0.1, "exp-a"), (0.05, "exp-b")):
            root = tmp_path_factory.mktemp(f"outputs-{exp}")
            cfg = write_fake_outputs(root, tracking_store, lr=lr)
            mp.setenv("DVC_EXP_NAME", exp)
            with contextlib.chdir(root):
                out[lr] = (cfg, log_pipeline_run(cfg), root)
    return out
