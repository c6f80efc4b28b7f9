"""Deskewing: the vectorised shear and centring equal scipy's affine transform, straighten what
is slanted, leave blank images alone, and travel with the model (scaler and model file)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mnist_softmax.data.deskew import deskew, moments
from mnist_softmax.data.prepare import load_raw
from mnist_softmax.data.scaler import Scaler, load_scaler, save_scaler
from mnist_softmax.model.model_file import SoftmaxModel, load_model, save_model


def _scipy_deskew(image: np.ndarray) -> np.ndarray:
    """The classic per-image deskew (shear about the centre of mass, then centring)."""
    rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
    mass = image.sum()
    cy, cx = (rows * image).sum() / mass, (cols * image).sum() / mass
    var_y = ((rows - cy) ** 2 * image).sum() / mass
    alpha = ((rows - cy) * (cols - cx) * image).sum() / mass / var_y
    matrix = np.array([[1.0, 0.0], [alpha, 1.0]])
    offset = np.array([cy, cx]) - matrix @ (np.array(image.shape) / 2)
    return ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="grid-constant")


def test_equals_scipys_affine_transform_on_real_digits(mnist_raw, cfg):
    test = load_raw(mnist_raw, cfg.data, "test")
    X = test.X[:300]
    ours = deskew(X, (28, 28))
    assert ours.dtype == np.float32 and ours.shape == (300, 784)
    for i in range(len(X)):
        expected = _scipy_deskew(X[i].reshape(28, 28).astype(np.float64))
        np.testing.assert_allclose(ours[i].reshape(28, 28), expected, atol=1e-3)
    # same answer whatever the chunking and the input's shape
    np.testing.assert_array_equal(deskew(X.reshape(-1, 28, 28), (28, 28)), ours)


def test_a_slanted_stroke_comes_out_upright_and_centred():
    image = np.zeros((28, 28), np.float32)
    for row in range(6, 22):  # a stroke leaning right, left of centre
        image[row, 4 + (21 - row) // 2] = 255
    alpha, dy, dx = moments(deskew(image[None], (28, 28)).reshape(1, 28, 28))
    before = moments(image[None])
    assert abs(before[0][0]) > 0.4 and abs(before[2][0]) > 5
    assert abs(alpha[0]) < 0.02 and abs(dy[0]) < 0.05 and abs(dx[0]) < 0.05


def test_blank_and_flat_images_are_left_alone():
    blank = np.zeros((2, 784), np.uint8)
    np.testing.assert_array_equal(deskew(blank, (28, 28)), 0)
    line = np.zeros((1, 28, 28), np.uint8)
    line[0, 14, 10:18] = 200  # one row of ink: no vertical extent, nothing to shear
    out = deskew(line, (28, 28)).reshape(28, 28)
    np.testing.assert_allclose(out.sum(), line.sum(), rtol=1e-5)
    assert np.count_nonzero(out[14]) >= 8  # still a horizontal line, centred


def test_scaler_fits_on_deskewed_pixels_and_round_trips(tmp_path, mnist_raw, cfg):
    X = load_raw(mnist_raw, cfg.data, "test").X[:500]
    scaler = Scaler.fit(X, "standardize", 25.5, (28, 28))
    assert scaler.deskew_shape == (28, 28)
    np.testing.assert_allclose(scaler.mean, deskew(X, (28, 28)).mean(axis=0), rtol=1e-5)
    features = scaler.transform(X)
    expected = (deskew(X, (28, 28)) - scaler.mean) / scaler.scale
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    save_scaler(tmp_path / "scaler.npz", scaler)
    assert load_scaler(tmp_path / "scaler.npz").deskew_shape == (28, 28)
    plain = Scaler.fit(X, "standardize", 25.5)
    save_scaler(tmp_path / "plain.npz", plain)
    assert load_scaler(tmp_path / "plain.npz").deskew_shape is None


@pytest.mark.parametrize("deskew_shape", [(28, 28), None])
def test_model_file_records_its_preprocessing(tmp_path, deskew_shape):
    rng = np.random.default_rng(0)
    model = SoftmaxModel(
        W=rng.normal(size=(784, 10)).astype(np.float32),
        b=np.zeros(10, np.float32),
        class_names=np.array([str(i) for i in range(10)]),
        scaler=Scaler(rng.uniform(0, 100, 784), rng.uniform(20, 50, 784), deskew_shape),
        image_shape=np.array([28, 28]),
    )
    save_model(tmp_path / "model.npz", model)
    loaded = load_model(tmp_path / "model.npz")
    assert loaded.scaler.deskew_shape == deskew_shape
    images = rng.integers(0, 256, size=(5, 784), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.logits(images), model.logits(images))


def test_model_file_from_before_deskewing_reads_raw_pixels(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        "W": rng.normal(size=(784, 10)).astype(np.float32),
        "b": np.zeros(10, np.float32),
        "class_names": np.array([str(i) for i in range(10)]),
        "scaler_mean": np.zeros(784),
        "scaler_scale": np.full(784, 255.0),
        "image_shape": np.array([28, 28]),
        "config_hash": np.array("old"),
    }
    np.savez(tmp_path / "old.npz", **arrays)
    model = load_model(tmp_path / "old.npz")
    assert model.scaler.deskew_shape is None
    images = rng.integers(0, 256, size=(3, 784), dtype=np.uint8)
    np.testing.assert_allclose(model.features(images), images / 255.0, rtol=1e-6)
