"""The stacked trainer: each config of a stack ends where a single run of it ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_softmax.config import Config, compose, config_from_container
from mnist_softmax.data.splits import Split
from mnist_softmax.errors import ConfigError, TrainingDivergedError
from mnist_softmax.model.outputs import fused_block_pass, fused_pass
from mnist_softmax.model.stacked_sgd import stack_key, train_stacked
from mnist_softmax.model.training import train

REPO = Path(__file__).resolve().parents[1]
SMALL = ("data.image_shape=[8,8]", "optimizer.batch_size=32", "optimizer.epochs=6")


def _cfg(*overrides: str) -> Config:
    return config_from_container(compose(REPO / "params", [*SMALL, *overrides]))


@pytest.mark.parametrize("output", ["softmax", "sparsemax"])
def test_block_pass_equals_one_pass_per_block(output):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(37, 20)).astype(np.float32)
    y = rng.integers(0, 5, size=37)
    Ws = [rng.normal(size=(20, 5)).astype(np.float32) for _ in range(3)]
    bs = [rng.normal(size=5).astype(np.float32) for _ in range(3)]
    l2s = [0.0, 1e-3, 0.5]
    Z, dW = np.empty((64, 15), np.float32), np.empty((20, 15), np.float32)
    l2 = np.repeat(np.asarray(l2s, np.float32), 5)
    stacked = fused_block_pass(output)(np.hstack(Ws), np.concatenate(bs), X, y, l2, 5, Z, dW)
    for k in range(3):
        one = fused_pass(output)(Ws[k].copy(), bs[k].copy(), X, y, l2s[k])
        cols = slice(5 * k, 5 * k + 5)
        np.testing.assert_allclose(stacked.dW[:, cols], one.dW, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(stacked.db[cols], one.db, rtol=1e-5, atol=1e-7)
        assert stacked.nll[k] == pytest.approx(one.nll, rel=1e-6)
        assert stacked.n_correct[k] == one.n_correct
    assert 0 < stacked.n_correct.sum() < 3 * len(y)


@pytest.mark.parametrize("output", ["softmax", "sparsemax"])
def test_a_stack_of_one_is_the_single_run_bit_for_bit(digits, output):
    """The single run is the K = 1 case of the stacked engine: nothing may differ, not 1 ulp."""
    cfg = _cfg(f"model={output}", "optimizer.lr=0.3", "model.l2=1e-3")
    (stacked,) = train_stacked(*digits, [cfg])
    single = train(*digits, cfg)
    assert stacked.model.output == single.model.output == output
    assert np.array_equal(stacked.model.W, single.model.W)
    assert np.array_equal(stacked.model.b, single.model.b)
    assert stacked.history.drop(columns="seconds").equals(single.history.drop(columns="seconds"))
    assert stacked.summary["train"] == single.summary["train"]
    assert single.summary["epochs_run"] == 6 and single.summary["val"]["acc"] > 0.85


GRID = [
    ("optimizer.lr=0.05", "model.l2=0"),
    ("optimizer.lr=0.5", "model.l2=2e-3"),
    ("optimizer.lr=0.2", "optimizer.nesterov=false", "optimizer.momentum=0.5"),
    ("optimizer.lr=0.1", "optimizer.schedule=step", "optimizer.step_epochs=2"),
    ("optimizer.lr=0.3", "optimizer.warmup_epochs=2", "optimizer.momentum=0"),
    ("optimizer.lr=1e6",),  # diverges: lr * l2 > 2
]


def test_each_config_equals_its_single_run(digits):
    cfgs = [_cfg(*overrides) for overrides in GRID]
    outcomes = train_stacked(*digits, cfgs)
    for cfg, outcome in zip(cfgs[:-1], outcomes[:-1], strict=True):
        single = train(*digits, cfg)
        np.testing.assert_allclose(outcome.model.W, single.model.W, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(outcome.model.b, single.model.b, rtol=1e-4, atol=1e-5)
        assert outcome.model.config_hash == single.model.config_hash
        assert outcome.summary["best_epoch"] == single.summary["best_epoch"]
        cols = ["epoch", "train/nll", "train/acc", "val/nll", "val/acc", "lr"]
        np.testing.assert_allclose(outcome.history[cols], single.history[cols], rtol=1e-4)
        for split in ("train", "val"):
            for key in ("acc", "nll"):
                expected = single.summary[split][key]
                assert outcome.summary[split][key] == pytest.approx(expected, rel=1e-4)
        assert outcome.summary["stacked_configs"] == len(cfgs)
    assert isinstance(outcomes[-1], TrainingDivergedError)
    assert "optimizer.lr (now 1e+06)" in str(outcomes[-1])


def test_early_stopping_is_per_config(digits):
    train_split, val, scaler = digits
    noisy_val = Split(val.X, np.random.default_rng(0).permutation(val.y))  # val NLL rises
    cfgs = [
        _cfg("optimizer.epochs=30", "optimizer.patience=2", "optimizer.schedule=constant"),
        _cfg("optimizer.epochs=30", "optimizer.patience=0", "optimizer.lr=0.01"),
    ]
    stopped, full = train_stacked(train_split, noisy_val, scaler, cfgs)
    single = train(train_split, noisy_val, scaler, cfgs[0])
    assert stopped.summary["epochs_run"] == single.summary["epochs_run"] < 30
    np.testing.assert_allclose(stopped.model.W, single.model.W, rtol=1e-4, atol=1e-5)
    assert full.summary["epochs_run"] == 30


def test_configs_that_cannot_share_a_stack_are_refused(digits):
    assert stack_key(_cfg("optimizer.lr=0.1")) == stack_key(_cfg("model.l2=0"))
    with pytest.raises(ConfigError, match="configs differ in seed"):
        train_stacked(*digits, [_cfg(), _cfg("optimizer.batch_size=64")])
    with pytest.raises(ConfigError, match="cannot be stacked"):
        lbfgs = config_from_container(compose(REPO / "params", ["optimizer=lbfgs"]))
        train_stacked(*digits, [lbfgs])
    with pytest.raises(ConfigError, match="no config"):
        train_stacked(*digits, [])
