"""The shipped config groups as dataclasses, for tests that vary a few keys.

``params/`` is the only source of defaults (the schema has none), so a test that needs an
SGDConfig starts from the shipped one and replaces what it is about.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

from mnist_softmax.config import Config, LBFGSConfig, SGDConfig, compose, config_from_container

REPO = Path(__file__).resolve().parents[1]


@cache
def shipped_config(*overrides: str) -> Config:
    """Compose ``params/`` with Hydra overrides and validate it (cached: Hydra costs ~0.2 s)."""
    return config_from_container(compose(REPO / "params", list(overrides)))


def sgd(**changes: object) -> SGDConfig:
    """The shipped ``optimizer=sgd`` group with ``changes`` applied (validated again)."""
    return replace(shipped_config().optimizer, **changes)


def lbfgs(**changes: object) -> LBFGSConfig:
    """The shipped ``optimizer=lbfgs`` group with ``changes`` applied (validated again)."""
    return replace(shipped_config("optimizer=lbfgs").optimizer, **changes)
