"""Preprocess on the real MNIST files: stratified, seeded split; scaler from train only."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from mnist_softmax.config import compose, config_from_container
from mnist_softmax.data.deskew import deskew
from mnist_softmax.data.download import fetch_dataset
from mnist_softmax.data.prepare import data_report, prepare, split_train_val
from mnist_softmax.data.scaler import Scaler
from mnist_softmax.data.splits import Split
from mnist_softmax.errors import DataError


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory, shared_mnist):
    data = config_from_container(compose(REPO / "params")).data
    out = tmp_path_factory.mktemp("raw")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATA_MIRROR", shared_mnist.as_uri())
        fetch_dataset(data, out)
    return out


def test_prepare_real_mnist(raw_dir, cfg):
    prepared = prepare(raw_dir, cfg.data)
    assert (len(prepared.train), len(prepared.val), len(prepared.test)) == (55000, 5000, 10000)
    assert prepared.train.X.dtype == np.uint8 and prepared.train.X.shape[1] == 784
    # stratified: each class's share in val is within 0.2 points of its share in train
    share_train = np.bincount(prepared.train.y) / len(prepared.train)
    share_val = np.bincount(prepared.val.y) / len(prepared.val)
    assert np.abs(share_train - share_val).max() < 0.002
    # the scaler comes from the train split only, deskewed (the shipped data.deskew)
    assert cfg.data.deskew and prepared.scaler.deskew_shape == (28, 28)
    deskewed = deskew(prepared.train.X, (28, 28))
    np.testing.assert_allclose(prepared.scaler.mean, deskewed.mean(axis=0, dtype=np.float64))
    report = data_report(prepared, cfg.data.class_names)
    assert report["size"] == {"train": 55000, "val": 5000, "test": 10000}
    assert sum(report["counts"]["test"].values()) == 10000


def test_split_is_deterministic_and_seed_dependent():
    rng = np.random.default_rng(0)
    full = Split(rng.integers(0, 255, (300, 4), dtype=np.uint8), np.repeat(np.arange(3), 100))
    a_train, a_val = split_train_val(full, 30, seed=1)
    _, b_val = split_train_val(full, 30, seed=1)
    _, c_val = split_train_val(full, 30, seed=2)
    np.testing.assert_array_equal(a_val.X, b_val.X)
    assert not np.array_equal(a_val.X, c_val.X)
    assert np.bincount(a_val.y).tolist() == [10, 10, 10]
    assert len(a_train) + len(a_val) == 300


@pytest.mark.parametrize("val_size", [0, 300, 1000])
def test_impossible_val_size(val_size):
    full = Split(np.zeros((300, 4), np.uint8), np.repeat(np.arange(3), 100))
    with pytest.raises(DataError, match="val_size"):
        split_train_val(full, val_size, seed=0)


def test_scalers():
    X = np.array([[0, 10], [0, 30]], dtype=np.uint8)
    std = Scaler.fit(X, "standardize", std_floor=1.0)
    np.testing.assert_allclose(std.transform(X, np.float64), [[0, -1], [0, 1]])
    floored = Scaler.fit(X, "standardize", std_floor=20.0)
    np.testing.assert_allclose(floored.transform(X, np.float64), [[0, -0.5], [0, 0.5]])
    unit = Scaler.fit(X, "unit", 25.5)
    np.testing.assert_allclose(unit.transform(X, np.float32), X / 255.0, rtol=1e-6)
