"""Multinomial softmax regression: the math, and the model file every later stage reads.

The loss is the mean cross-entropy plus an L2 penalty on the weights (bias unregularized)::

    loss = -1/n * sum_i log softmax(x_i W + b)[y_i] + l2/2 * ||W||^2
    dW   = X^T (P - Y) / n + l2 * W,      db = sum_i (P - Y)_i / n

Log-probabilities come from ``z - logsumexp(z)`` (never ``log(softmax(z))``), so logits of any
size give finite values, as in scikit-learn's ``extmath.softmax`` and ``_logistic``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from mnist_softmax.atomic import load_npz, save_npz
from mnist_softmax.errors import DataError

_MODEL_ARRAYS = ("W", "b", "class_names", "scaler_mean", "scaler_scale", "image_shape")


def softmax(Z: np.ndarray) -> np.ndarray:
    """Return row-wise softmax probabilities of logits ``Z`` of shape (n_samples, n_classes).

    The row max is subtracted first: exp never overflows and the result is unchanged.
    """
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    E /= E.sum(axis=1, keepdims=True)
    return E


def log_softmax(Z: np.ndarray) -> np.ndarray:
    """Return row-wise log-probabilities ``Z - logsumexp(Z)`` of shape (n_samples, n_classes)."""
    return Z - logsumexp(Z, axis=1, keepdims=True)


def predict_logits(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return logits ``X W + b`` of shape (n_samples, n_classes) for scaled features ``X``."""
    return X @ W + b


def nll_and_accuracy(Z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return the mean negative log-likelihood and the accuracy of logits ``Z`` for labels ``y``.

    Z : ndarray of shape (n_samples, n_classes); y : ndarray of shape (n_samples,), int
    """
    logp = log_softmax(Z)
    nll = -np.take_along_axis(logp, y[:, None], axis=1).mean()
    return float(nll), float((Z.argmax(axis=1) == y).mean())


def loss_and_grad(
    W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Return the penalized loss and its gradients with respect to ``W`` and ``b``.

    Parameters
    ----------
    W : ndarray of shape (n_features, n_classes)
    b : ndarray of shape (n_classes,)
    X : ndarray of shape (n_samples, n_features), scaled features in the dtype of ``W``
    y : ndarray of shape (n_samples,), integer class indices
    l2 : float, L2 penalty on ``W``

    Returns
    -------
    loss : float, mean cross-entropy + l2/2 * ||W||^2
    dW : ndarray of shape (n_features, n_classes)
    db : ndarray of shape (n_classes,)
    """
    out = forward_backward(W, b, X, y, l2)
    return out.loss, out.dW, out.db


@dataclass(frozen=True)
class Pass:
    """One forward and backward pass: what an optimizer step needs, and free train metrics.

    loss : penalized loss; nll : mean cross-entropy alone; n_correct : argmax hits
    dW : ndarray of shape (n_features, n_classes); db : ndarray of shape (n_classes,)
    """

    loss: float
    nll: float
    n_correct: int
    dW: np.ndarray
    db: np.ndarray


def forward_backward(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float) -> Pass:
    """Return loss, gradients and train metrics of one batch in a single pass.

    The metrics come from the logits the gradient needs anyway, so an epoch's train curve
    costs no extra pass over the data. Shapes as in :func:`loss_and_grad`.
    """
    Z = predict_logits(X, W, b)
    n_correct = int(np.count_nonzero(Z.argmax(axis=1) == y))
    Z -= Z.max(axis=1, keepdims=True)  # stable: exp(z - max) <= 1
    G = np.exp(Z)
    total = G.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    nll = float((np.log(total[:, 0]) - Z[rows, y]).mean())  # logsumexp(z) - z_y
    G /= total  # P
    G[rows, y] -= 1.0  # P - Y without building the one-hot Y
    G /= len(y)
    dW = X.T @ G
    dW += l2 * W
    loss = nll + 0.5 * l2 * float(np.vdot(W, W))
    return Pass(loss=loss, nll=nll, n_correct=n_correct, dW=dW, db=G.sum(axis=0))


@dataclass(frozen=True)
class FitStep:
    """The state an optimizer reports after each epoch (SGD) or iteration (L-BFGS).

    W : ndarray of shape (n_features, n_classes); b : ndarray of shape (n_classes,)
    train_nll, train_acc : train metrics (SGD: averaged over the epoch's minibatches)
    lr : learning rate at the start of the epoch (NaN for L-BFGS, which has none)
    """

    epoch: int
    W: np.ndarray
    b: np.ndarray
    train_nll: float
    train_acc: float
    lr: float


@dataclass(frozen=True)
class SoftmaxModel:
    """A trained model with its input scaling, so it predicts from raw pixels.

    W : ndarray of shape (n_features, n_classes); b : ndarray of shape (n_classes,)
    class_names : ndarray of shape (n_classes,), str; image_shape : ndarray of shape (2,), int
    scaler_mean, scaler_scale : ndarray of shape (n_features,); config_hash : str
    """

    W: np.ndarray
    b: np.ndarray
    class_names: np.ndarray
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    image_shape: np.ndarray
    config_hash: str = ""

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Return logits of shape (n_samples, n_classes) for raw pixels (uint8 or float)."""
        dtype = self.W.dtype
        Xs = np.asarray(X).reshape(len(X), -1).astype(dtype)
        Xs -= self.scaler_mean.astype(dtype)
        Xs /= self.scaler_scale.astype(dtype)
        return predict_logits(Xs, self.W, self.b)

    def predict_proba(self, X: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Return class probabilities softmax(logits / T) of shape (n_samples, n_classes)."""
        return softmax(self.logits(X) / temperature)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return the most probable class index for each row, shape (n_samples,)."""
        return self.logits(X).argmax(axis=1)


def save_model(path: str | Path, model: SoftmaxModel) -> None:
    """Write the model as a plain ``.npz`` (atomically; no pickled objects)."""
    save_npz(
        path,
        **{name: getattr(model, name) for name in _MODEL_ARRAYS},
        config_hash=np.array(model.config_hash),
    )


def load_model(path: str | Path) -> SoftmaxModel:
    """Load a model written by :func:`save_model`, checking that every array fits the others."""
    if not Path(path).is_file():
        raise DataError(f"{path} not found: run `dvc repro train` first")
    try:
        arrays = load_npz(path)
    except (OSError, ValueError) as exc:
        msg = f"{path} is not a readable model file ({exc}): rerun `dvc repro train`"
        raise DataError(msg) from None
    missing = [k for k in (*_MODEL_ARRAYS, "config_hash") if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks arrays {missing}: rerun `dvc repro train`")
    _check_shapes(path, arrays)
    return SoftmaxModel(
        **{name: arrays[name] for name in _MODEL_ARRAYS},
        config_hash=str(arrays["config_hash"]),
    )


def _check_shapes(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    W = arrays["W"]
    if W.ndim != 2:
        raise DataError(f"{path}: W has shape {W.shape}, expected (n_features, n_classes)")
    n_features, n_classes = W.shape
    expected = {
        "b": (n_classes,),
        "class_names": (n_classes,),
        "scaler_mean": (n_features,),
        "scaler_scale": (n_features,),
        "image_shape": (2,),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise DataError(f"{path}: {name} has shape {arrays[name].shape}, expected {shape}")
    if int(np.prod(arrays["image_shape"])) != n_features:
        raise DataError(f"{path}: image_shape {arrays['image_shape']} != {n_features} features")
