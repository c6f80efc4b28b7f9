"""The state of K SGD configs trained side by side: weights, velocities, per-column settings.

Kept apart from the loop (:mod:`mnist_softmax.model.sgd`) so the update rule reads on its own:
each config's learning rate, momentum, Nesterov flag and L2 become per-column arrays over its
block of ``n_classes`` columns, and one element-wise update serves every config. A single run
is K = 1, with the same float operations as the scalar update would do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mnist_softmax.config import SGDConfig


class SGDStack:
    """The live configs' weights, velocities and per-column hyperparameters, side by side.

    W, vW : ndarray of shape (n_features, L * n_classes); b, vb : ndarray of shape (L * C,)
    for the L configs still training (``live`` holds their indices into ``cfgs``).
    """

    def __init__(
        self,
        cfgs: Sequence[SGDConfig],
        l2s: Sequence[float],
        n_features: int,
        n_classes: int,
        dtype: np.dtype,
    ) -> None:
        self.cfgs, self.n_classes, self.dtype = cfgs, n_classes, np.dtype(dtype)
        self.live = list(range(len(cfgs)))
        width = len(cfgs) * n_classes
        self.W = np.zeros((n_features, width), self.dtype)
        self.b = np.zeros(width, self.dtype)
        self.vW, self.vb = np.zeros_like(self.W), np.zeros_like(self.b)
        self.l2s = list(l2s)
        self._set_columns()

    def _set_columns(self) -> None:
        """Set the live configs' per-column L2, momentum and update coefficients."""
        live = [self.cfgs[k] for k in self.live]
        self.l2 = self._columns([self.l2s[k] for k in self.live])
        self.mu = self._columns([o.momentum for o in live])
        # Nesterov: p -= lr (g + mu v); plain: p -= lr v. Both are p -= lr (a g + c v).
        self.a = self._columns([1.0 if o.nesterov else 0.0 for o in live])
        self.c = self._columns([o.momentum if o.nesterov else 1.0 for o in live])

    def _columns(self, values: Sequence[float]) -> np.ndarray | np.generic:
        """Return ``values`` repeated over each config's block of columns, or one scalar when
        they are all equal (always for K = 1): a scalar operand spares numpy a broadcast loop
        over rows of K * n_classes, and gives the very same floats."""
        if len(values) == 1 or all(v == values[0] for v in values):
            return self.dtype.type(values[0])
        return np.repeat(np.asarray(values, dtype=self.dtype), self.n_classes)

    def block(self, pos: int) -> slice:
        """The columns of the live config at position ``pos``."""
        return slice(pos * self.n_classes, (pos + 1) * self.n_classes)

    def learning_rates(
        self, schedule: Callable[[SGDConfig, float], float], t: float
    ) -> np.ndarray | np.generic:
        """Return each live config's ``schedule(cfg, t)`` learning rate, per column."""
        return self._columns([schedule(self.cfgs[k], t) for k in self.live])

    def apply_momentum(
        self, dW: np.ndarray, db: np.ndarray, lr: np.ndarray | np.generic, tmp: np.ndarray
    ) -> None:
        """Update W, b and their velocities in place from the gradients (overwritten).

        ``tmp`` (shape of W) is scratch.
        """
        _apply_momentum(self.W, self.vW, dW, lr, self.mu, self.a, self.c, tmp)
        _apply_momentum(self.b, self.vb, db, lr, self.mu, self.a, self.c, None)

    def keep(self, positions: list[int]) -> None:
        """Keep only the live configs at ``positions``; drop the others' columns."""
        cols = np.concatenate([np.arange(len(self.b))[self.block(p)] for p in positions])
        for name in ("W", "vW"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[:, cols]))
        for name in ("b", "vb"):
            setattr(self, name, getattr(self, name)[cols])
        self.live = [self.live[p] for p in positions]
        self._set_columns()


def _apply_momentum(
    p: np.ndarray,
    v: np.ndarray,
    g: np.ndarray,
    lr: np.ndarray | np.generic,
    mu: np.ndarray | np.generic,
    a: np.ndarray | np.generic,
    c: np.ndarray | np.generic,
    tmp: np.ndarray | None,
) -> None:
    """Update ``p`` and its velocity ``v`` in place (PyTorch's SGD formulation), per column.

    v <- mu v + g;  p <- p - lr (g + mu v) with Nesterov, p <- p - lr v without
    (Sutskever et al. 2013, rewritten so the gradient is taken at ``p`` itself). Written once
    for both as p <- p - lr (a g + c v): (a, c) = (1, mu) is Nesterov, (0, 1) plain momentum,
    each the exact float operations of its formula. ``tmp`` (shape of ``p``, or None to
    allocate) is scratch; ``g`` is overwritten.
    """
    v *= mu
    v += g
    g *= a
    g += np.multiply(c, v, out=tmp)
    p -= np.multiply(lr, g, out=tmp)
