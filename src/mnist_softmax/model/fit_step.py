"""What an optimizer reports after each epoch (SGD) or iteration (L-BFGS).

Both optimizers call the same ``on_epoch(step) -> stop`` callback with it, so the training
loop's monitor (validation metrics, best epoch, early stopping) is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FitStep:
    """The optimizer's state after one epoch or iteration.

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
