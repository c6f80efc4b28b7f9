"""Softmax regression math and the model file: stable softmax, exact gradient, safe loading."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_softmax.atomic import load_npz, save_npz
from mnist_softmax.data.scaler import Scaler
from mnist_softmax.errors import DataError
from mnist_softmax.model.model_file import SoftmaxModel, load_model, save_model
from mnist_softmax.model.numerics import accuracy, forward_backward, log_softmax, nll, softmax


def loss_and_grad(W, b, X, y, l2):
    out = forward_backward(W, b, X, y, l2)
    return out.loss, out.dW, out.db


def _problem(n: int, d: int, k: int, dtype: str = "float64", seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    y = rng.integers(0, k, size=n)
    W = rng.normal(scale=0.5, size=(d, k)).astype(dtype)
    b = rng.normal(size=k).astype(dtype)
    return X, y, W, b


def _model(d: int = 4, k: int = 3, seed: int = 0) -> SoftmaxModel:
    rng = np.random.default_rng(seed)
    return SoftmaxModel(
        W=rng.normal(size=(d, k)).astype(np.float32),
        b=rng.normal(size=k).astype(np.float32),
        class_names=np.array([f"c{i}" for i in range(k)]),
        scaler=Scaler(mean=rng.uniform(0, 100, size=d), scale=rng.uniform(1, 50, size=d)),
        image_shape=np.array([2, d // 2]),
        config_hash="abc123",
    )


def test_softmax_known_values():
    p = softmax(np.array([[2.5, 1.0, 0.5]]))
    np.testing.assert_array_equal(np.round(p, 3), [[0.736, 0.164, 0.100]])


def test_softmax_rows_sum_to_one():
    Z = np.random.default_rng(1).normal(scale=10, size=(50, 10))
    np.testing.assert_allclose(softmax(Z).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(log_softmax(Z)), softmax(Z), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_logits_stay_finite(dtype):
    Z = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p, logp = softmax(Z), log_softmax(Z)
    assert np.isfinite(p).all() and np.isfinite(logp).all()
    np.testing.assert_allclose(p[0], [1, 0, 0])
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    y = np.array([2, 0])
    assert nll(Z, y) == pytest.approx((2e4 + np.log(3)) / 2) and accuracy(Z, y) == 0.5
    X, y, _, _ = _problem(2, 3, 3, dtype)
    loss, dW, db = loss_and_grad(np.full((3, 3), 1e4, dtype), np.zeros(3, dtype), X * 1e3, y, 0.0)
    assert np.isfinite(loss) and np.isfinite(dW).all() and np.isfinite(db).all()


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize(("n", "d", "k"), [(7, 3, 2), (20, 5, 4)])
def test_gradient_matches_finite_differences(n, d, k, l2):
    X, y, W, b = _problem(n, d, k)
    _, dW, db = loss_and_grad(W, b, X, y, l2)
    eps = 1e-6
    num_W = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        E = np.zeros_like(W)
        E[idx] = eps
        num_W[idx] = loss_and_grad(W + E, b, X, y, l2)[0] - loss_and_grad(W - E, b, X, y, l2)[0]
    num_b = np.array(
        [
            loss_and_grad(W, b + eps * e, X, y, l2)[0] - loss_and_grad(W, b - eps * e, X, y, l2)[0]
            for e in np.eye(k)
        ]
    )
    np.testing.assert_allclose(dW, num_W / (2 * eps), atol=1e-7)
    np.testing.assert_allclose(db, num_b / (2 * eps), atol=1e-7)


def test_loss_is_cross_entropy_plus_half_l2():
    X, y, W, b = _problem(30, 4, 3)
    Z = X @ W + b
    ce = -np.log(softmax(Z)[np.arange(30), y]).mean()
    out = forward_backward(W, b, X, y, 0.2)
    assert out.nll == pytest.approx(ce, rel=1e-12)
    assert out.loss == pytest.approx(ce + 0.1 * (W**2).sum(), rel=1e-12)
    assert out.n_correct == int((Z.argmax(axis=1) == y).sum())


def test_float32_loss_close_to_float64():
    X, y, W, b = _problem(100, 10, 5)
    loss64, dW64, _ = loss_and_grad(W, b, X, y, 0.01)
    loss32, dW32, _ = loss_and_grad(*(a.astype(np.float32) for a in (W, b, X)), y, 0.01)
    assert dW32.dtype == np.float32
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    np.testing.assert_allclose(dW32, dW64, atol=1e-5)


def test_model_predicts_from_raw_pixels_with_its_scaler():
    model = _model()
    X_raw = np.random.default_rng(2).integers(0, 256, size=(6, 4)).astype(np.uint8)
    scaled = ((X_raw - model.scaler.mean) / model.scaler.scale).astype(np.float32)
    np.testing.assert_allclose(model.logits(X_raw), scaled @ model.W + model.b, rtol=1e-5)
    np.testing.assert_allclose(model.logits(X_raw.astype(float)), model.logits(X_raw))
    p, p_hot = model.predict_proba(X_raw), model.predict_proba(X_raw, temperature=0.5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert (p_hot.max(axis=1) >= p.max(axis=1) - 1e-6).all()  # T < 1 sharpens
    np.testing.assert_allclose(model.predict_proba(X_raw.reshape(6, 2, 2)), p)  # image shaped


def test_save_load_roundtrip(tmp_path):
    model = _model()
    save_model(tmp_path / "m.npz", model)
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.config_hash == "abc123"
    for name in ("W", "b", "class_names", "image_shape"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    np.testing.assert_array_equal(loaded.scaler.mean, model.scaler.mean)
    np.testing.assert_array_equal(loaded.scaler.scale, model.scaler.scale)
    assert loaded.W.dtype == np.float32
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:  # no object arrays inside
        assert all(data[key].dtype != object for key in data.files)


@pytest.mark.parametrize(
    ("name", "bad"),
    [("b", np.zeros(4)), ("scaler_mean", np.zeros(3)), ("class_names", np.array(["a"]))],
)
def test_load_rejects_wrong_shapes(tmp_path, name, bad):
    save_model(tmp_path / "m.npz", _model())
    arrays = load_npz(tmp_path / "m.npz")
    save_npz(tmp_path / "m.npz", **{**arrays, name: bad})
    with pytest.raises(DataError, match=name):
        load_model(tmp_path / "m.npz")


def test_load_rejects_missing_arrays_and_files(tmp_path):
    save_model(tmp_path / "m.npz", _model())
    arrays = load_npz(tmp_path / "m.npz")
    del arrays["scaler_scale"]
    save_npz(tmp_path / "m.npz", **arrays)
    with pytest.raises(DataError, match="scaler_scale"):
        load_model(tmp_path / "m.npz")
    with pytest.raises(DataError, match="not found"):
        load_model(tmp_path / "absent.npz")


def test_sparsemax_known_values_and_exact_zero():
    from mnist_softmax.model.numerics import sparsemax

    p = sparsemax(np.array([[1.0, 0.8, 0.1], [2.5, 1.0, 0.5]]))
    np.testing.assert_allclose(p, [[0.6, 0.4, 0.0], [1.0, 0.0, 0.0]], atol=1e-12)
    assert p[0, 2] == 0.0  # exactly zero, not tiny


def test_sparsemax_is_a_projection_onto_the_simplex():
    from scipy.optimize import minimize

    from mnist_softmax.model.numerics import sparsemax

    rng = np.random.default_rng(3)
    Z = rng.normal(scale=2.0, size=(40, 6))
    P = sparsemax(Z)
    assert (P >= 0).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(sparsemax(Z + 7.5), P, atol=1e-12)  # translation invariance
    z = Z[0]  # the definition: argmin ||p - z||^2 over the simplex, by a generic solver
    on_simplex = {"type": "eq", "fun": lambda q: q.sum() - 1}
    ref = minimize(lambda q: ((q - z) ** 2).sum(), np.full(6, 1 / 6), method="SLSQP",
                   bounds=[(0, 1)] * 6, constraints=on_simplex)  # fmt: skip
    np.testing.assert_allclose(P[0], ref.x, atol=1e-5)


def test_sparsemax_ties_large_inputs_and_temperature_limits():
    from mnist_softmax.model.numerics import sparsemax

    np.testing.assert_allclose(sparsemax(np.array([[3.0, 3.0, -1.0]])), [[0.5, 0.5, 0.0]])
    big = sparsemax(np.array([[1e300, 1e300 - 1e290, 0.0]]))
    assert np.isfinite(big).all() and big.sum() == pytest.approx(1.0)
    z = np.array([[2.0, 1.9, 0.0, -1.0]])
    np.testing.assert_allclose(sparsemax(z, temperature=1e-3), [[1, 0, 0, 0]])  # T -> 0: argmax
    np.testing.assert_allclose(sparsemax(z, temperature=1e4), np.full((1, 4), 0.25), atol=1e-3)
