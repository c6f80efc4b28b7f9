"""Full-batch L-BFGS on the exact penalized loss, via ``scipy.optimize.minimize``.

The problem is smooth and convex, so a quasi-Newton method with the analytic gradient reaches
the optimum in a few hundred full passes; scipy's L-BFGS-B does the line search and the
curvature pairs. Parameters travel to scipy as one float64 vector ``[W.ravel(), b]``; the loss
and gradient are computed in the dtype of ``X``.

``optimizer.tol`` governs stopping, as in scikit-learn's ``_logistic.py``: it is scipy's
``gtol`` (largest projected gradient component), and scipy's other test, the relative decrease
of the loss (``ftol``, 2.2e-9 by default), is pushed down to 64 machine epsilons so it does not
stop the search first. ``maxls=50`` gives the line search room on badly scaled steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.optimize import OptimizeResult, minimize

from mnist_softmax.config import LBFGSConfig
from mnist_softmax.model.fit_step import FitStep
from mnist_softmax.model.numerics import Pass
from mnist_softmax.model.outputs import fused_pass


def fit_lbfgs(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cfg: LBFGSConfig,
    l2: float,
    on_iter: Callable[[FitStep], bool],
    output: str = "softmax",
) -> OptimizeResult:
    """Minimize the penalized loss by L-BFGS-B, reporting to ``on_iter`` after each iteration.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), scaled; its dtype is the weights' dtype
    y : ndarray of shape (n_samples,), integer class indices
    n_classes : number of classes
    cfg : max_iter, tol (projected-gradient tolerance, scipy's ``gtol``), history (``maxcor``)
    l2 : L2 penalty on W
    on_iter : called with each iteration's :class:`FitStep`; returning True stops early
    output : the model's output kind, which picks the fused pass (and so the loss); the
        sparsemax loss is convex too, with a gradient that is continuous (piecewise linear)

    Returns
    -------
    scipy's OptimizeResult (``x`` is ``[W.ravel(), b]`` at the last iterate)
    """
    forward_backward = fused_pass(output)
    n_features = X.shape[1]
    shape = (n_features, n_classes)
    last: dict[str, object] = {}
    steps: list[int] = []

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        W = theta[: n_features * n_classes].reshape(shape).astype(X.dtype)
        return W, theta[n_features * n_classes :].astype(X.dtype)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        out = forward_backward(*unpack(theta), X, y, l2)
        last.update(theta=theta.copy(), out=out)  # the accepted point is the last evaluated
        return out.loss, np.concatenate([out.dW.ravel(), out.db]).astype(np.float64)

    def callback(intermediate_result: OptimizeResult) -> None:
        theta = intermediate_result.x
        W, b = unpack(theta)
        out = last.get("out")
        if not (isinstance(out, Pass) and np.array_equal(last.get("theta"), theta)):
            out = forward_backward(W, b, X, y, l2)
        step = FitStep(
            epoch=len(steps) + 1,
            W=W,
            b=b,
            train_nll=out.nll,
            train_acc=out.n_correct / len(y),
            lr=math.nan,
        )
        steps.append(step.epoch)
        if on_iter(step):
            raise StopIteration  # scipy >= 1.11 ends the minimization cleanly

    theta0 = np.zeros(n_features * n_classes + n_classes)
    return minimize(
        objective,
        theta0,
        jac=True,
        method="L-BFGS-B",
        callback=callback,
        options={
            "maxiter": cfg.max_iter,
            "gtol": cfg.tol,
            "ftol": 64 * np.finfo(np.float64).eps,
            "maxcor": cfg.history,
            "maxls": 50,
        },
    )
