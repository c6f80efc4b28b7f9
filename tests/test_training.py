"""Training end to end on small data: selection on validation, determinism, divergence, outputs."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnist_softmax.atomic import read_json
from mnist_softmax.config import Config, compose, config_from_container, to_yaml
from mnist_softmax.data.scaler import Scaler, save_scaler
from mnist_softmax.data.splits import Split, save_split
from mnist_softmax.errors import TrainingDivergedError
from mnist_softmax.model.curves import CURVE_COLUMNS
from mnist_softmax.model.model_file import load_model
from mnist_softmax.model.training import peak_rss_mb, train

REPO = Path(__file__).resolve().parents[1]


def _cfg(*overrides: str) -> Config:
    small = ["data.image_shape=[8,8]"]
    if "optimizer=lbfgs" not in overrides:
        small.append("optimizer.batch_size=32")
    return config_from_container(compose(REPO / "params", [*small, *overrides]))


def test_default_sgd_learns_and_reports(digits):
    result = train(*digits, _cfg("optimizer.epochs=5"))
    hist, summary = result.history, result.summary
    assert list(hist.columns) == list(CURVE_COLUMNS) and list(hist["epoch"]) == [1, 2, 3, 4, 5]
    assert summary["val"]["acc"] > 0.85 and summary["train"]["acc"] > 0.95
    assert summary["best_epoch"] == int(hist.loc[hist["val/nll"].idxmin(), "epoch"])
    assert summary["val"]["nll"] == pytest.approx(hist["val/nll"].min())
    assert set(summary) == {
        "best_epoch", "epochs_run", "optimizer", "train_seconds", "peak_rss_mb",
        "seconds_per_epoch", "train", "val",
    }  # fmt: skip
    # the process's lifetime peak (a fresh process per stage in the pipeline; here, pytest's)
    assert summary["optimizer"] == "sgd" and 0 < summary["peak_rss_mb"] <= peak_rss_mb() + 0.1
    assert result.model.W.dtype == np.float32 and result.model.W.shape == (64, 10)
    acc = (result.model.logits(digits[1].X).argmax(axis=1) == digits[1].y).mean()  # raw pixels in
    assert acc == pytest.approx(summary["val"]["acc"])


def test_more_epochs_lower_train_loss(digits):
    short = train(*digits, _cfg("optimizer.epochs=1", "optimizer.lr=0.01"))
    longer = train(*digits, _cfg("optimizer.epochs=6", "optimizer.lr=0.01"))
    assert longer.summary["train"]["nll"] < short.summary["train"]["nll"] - 0.02


def test_same_seed_bit_identical_and_dtype_selectable(digits):
    a = train(*digits, _cfg("optimizer.epochs=2", "seed=3"))
    b = train(*digits, _cfg("optimizer.epochs=2", "seed=3"))
    c = train(*digits, _cfg("optimizer.epochs=2", "seed=4"))
    assert a.model.W.tobytes() == b.model.W.tobytes() and a.model.b.tobytes() == b.model.b.tobytes()
    assert a.model.W.tobytes() != c.model.W.tobytes()
    assert a.model.config_hash == b.model.config_hash != c.model.config_hash
    d = train(*digits, _cfg("optimizer.epochs=2", "model.dtype=float64"))
    assert d.model.W.dtype == np.float64


def test_early_stopping_keeps_best_val_epoch(digits):
    train_split, val, scaler = digits
    rng = np.random.default_rng(0)
    noisy_val = Split(val.X, rng.permutation(val.y))  # unlearnable: val NLL rises as W grows
    cfg = _cfg("optimizer.epochs=30", "optimizer.patience=2", "optimizer.schedule=constant")
    result = train(train_split, noisy_val, scaler, cfg)
    hist, best = result.history, result.summary["best_epoch"]
    assert result.summary["epochs_run"] == best + 2 < 30
    assert hist["val/nll"].iloc[best - 1] == hist["val/nll"].min()
    same_for_best = _cfg(f"optimizer.epochs={best}", "optimizer.schedule=constant")
    expected = train(train_split, noisy_val, scaler, same_for_best)
    np.testing.assert_array_equal(result.model.W, expected.model.W)


def test_lbfgs_one_row_per_iteration(digits):
    result = train(*digits, _cfg("optimizer=lbfgs", "optimizer.max_iter=15", "model.l2=1e-3"))
    assert result.summary["optimizer"] == "lbfgs" and result.summary["epochs_run"] == 15
    assert result.history["train/nll"].iloc[-1] < result.history["train/nll"].iloc[0]
    assert result.history["lr"].isna().all() and result.summary["val"]["acc"] > 0.85


def test_lbfgs_reports_and_warns_when_max_iter_cuts_it_short(digits, caplog):
    with caplog.at_level(logging.WARNING):
        result = train(*digits, _cfg("optimizer=lbfgs", "optimizer.max_iter=5"))
    assert result.summary["converged"] is False
    assert "ITERATIONS" in result.summary["solver_message"]
    assert "did not converge in 5 iterations" in caplog.text


def test_lbfgs_tol_governs_stopping(digits):
    """A looser tol stops sooner; a converged fit met tol (scipy's ftol does not stop first)."""
    runs = {
        tol: train(
            *digits, _cfg("optimizer=lbfgs", "optimizer.max_iter=2000", f"optimizer.tol={tol}")
        )
        for tol in (1e-2, 1e-5)
    }
    assert all(r.summary["converged"] for r in runs.values())
    assert "PROJECTED" in runs[1e-5].summary["solver_message"]  # gtol = tol stopped it
    assert runs[1e-2].summary["epochs_run"] < runs[1e-5].summary["epochs_run"]


def test_huge_lr_raises_named_error(digits):
    cfg = _cfg("optimizer.lr=1e6")  # lr * l2 > 2: the weights grow geometrically to inf
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+.*optimizer\.lr \(now 1e\+06\)"):
        train(*digits, cfg)


def _load_stage() -> object:
    spec = importlib.util.spec_from_file_location("train_stage", REPO / "pipeline" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stage_cfg(tmp_path: Path, digits, *overrides: str) -> Config:
    prepared = tmp_path / "prepared"
    save_split(prepared / "train.npz", digits[0])
    save_split(prepared / "val.npz", digits[1])  # no test.npz: training must not need it
    save_scaler(prepared / "scaler.npz", digits[2])
    paths = {"prepared_dir": prepared, "model": "m/model.npz", "train_metrics": "r/train.json",
             "train_curves": "r/curves.csv"}  # fmt: skip
    return _cfg(*(f"paths.{k}={tmp_path / v}" for k, v in paths.items()), *overrides)


def test_stage_writes_model_curves_and_metrics(tmp_path, digits):
    cfg = _stage_cfg(tmp_path, digits, "optimizer.epochs=3")
    _load_stage().main(cfg)
    model = load_model(cfg.paths.model)
    assert model.W.shape == (64, 10) and list(model.class_names) == list("0123456789")
    curves = pd.read_csv(cfg.paths.train_curves)
    assert list(curves.columns) == list(CURVE_COLUMNS) and len(curves) == 3
    summary = read_json(cfg.paths.train_metrics)
    assert summary["epochs_run"] == 3 and summary["val"]["acc"] > 0.85


def test_stage_writes_nothing_when_training_diverges(tmp_path, digits):
    cfg = _stage_cfg(tmp_path, digits, "optimizer.lr=1e6")
    with pytest.raises(TrainingDivergedError):
        _load_stage().main(cfg)
    assert not Path(cfg.paths.model).exists() and not Path(cfg.paths.train_metrics).exists()


def test_real_mnist_slice_reaches_expected_accuracy(mnist):
    """Accuracy only: timings belong in `make bench`, not in a test on a shared machine.

    ``mnist`` honours $SHARED_MNIST and fails (never skips) when the files are absent.
    """
    X = mnist["train_images"][:12000].reshape(12000, 784)
    y = mnist["train_labels"][:12000].astype(np.int64)
    train_split, val = Split(X[:10000], y[:10000]), Split(X[10000:], y[10000:])
    cfg = config_from_container(compose(REPO / "params", ["optimizer.epochs=5"]))
    result = train(train_split, val, Scaler.fit(train_split.X, "standardize", 25.5), cfg)
    assert result.summary["val"]["acc"] > 0.88


def test_stage_script_exits_4_with_one_line_on_divergence(tmp_path, digits):
    cfg_overrides = ["data.image_shape=[8,8]", "optimizer.lr=1e6", "paths.prepared_dir=prepared"]
    (tmp_path / "params.yaml").write_text(to_yaml(compose(REPO / "params", cfg_overrides)))
    _stage_cfg(tmp_path, digits)  # writes tmp_path/prepared
    proc = subprocess.run(
        [sys.executable, str(REPO / "pipeline" / "train.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert "[train] error: training diverged at epoch" in proc.stderr
    assert "optimizer.lr" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()
