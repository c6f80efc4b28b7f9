"""A read-only view of the config that lets a stage read only the params it declares.

DVC reruns a stage when one of its ``params:`` in dvc.yaml changes, and never otherwise. A stage
that reads a key it does not declare serves stale outputs when that key changes (the class
names written into the model file were such a key). So each ``pipeline/<stage>.py`` declares
``PARAMS`` (the same list as its dvc.yaml entry; a test compares both) and receives this view:
reading any other key stops the stage with :class:`UndeclaredParamError`. ``paths.*`` are
always readable: they are the stage's deps and outs in dvc.yaml, checked by their own test.

The view also records which keys were read. With ``$MNIST_SOFTMAX_PARAMS_AUDIT`` set to a
folder, the stage writes them to ``<folder>/<stage>.json`` on success, which lets the
end-to-end test prove the other direction: every declared param is really read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from mnist_softmax.config import select_keys
from mnist_softmax.errors import PipelineError

AUDIT_ENV = "MNIST_SOFTMAX_PARAMS_AUDIT"
ALWAYS_READABLE = ("paths",)


class UndeclaredParamError(PipelineError):
    """A stage read a config key that is not among its declared params (a code bug)."""


def _covers(declared: str, key: str) -> bool:
    """True when ``declared`` is ``key`` or one of its parent groups (``optimizer`` > ``.lr``)."""
    return key == declared or key.startswith(f"{declared}.")


class ScopedConfig:
    """Attribute access to a config dataclass, restricted to the declared keys.

    Nested dataclasses come back wrapped too, so ``cfg.data.class_names`` is checked as the key
    ``data.class_names``. ``isinstance(view, SGDConfig)`` still answers for the wrapped object.
    """

    def __init__(self, target: Any, declared: tuple[str, ...], stage: str, prefix: str = "",
                 reads: set[str] | None = None) -> None:  # fmt: skip
        self._target, self._declared, self._stage = target, declared, stage
        self._prefix = prefix
        self._reads: set[str] = set() if reads is None else reads

    @property  # lets isinstance() see the wrapped dataclass (as unittest.mock does)
    def __class__(self) -> type:  # type: ignore[override]
        return type(self._target)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        key = f"{self._prefix}{name}"
        field_names = {f.name for f in dataclasses.fields(self._target)}
        if name not in field_names:
            raise AttributeError(f"config has no key {key}")
        value = getattr(self._target, name)
        if dataclasses.is_dataclass(value):
            self._check(key, group=True)
            return ScopedConfig(value, self._declared, self._stage, f"{key}.", self._reads)
        self._check(key, group=False)
        self._reads.add(key)
        return value

    def _check(self, key: str, group: bool) -> None:
        if key.split(".")[0] in ALWAYS_READABLE:
            return
        allowed = any(_covers(d, key) or (group and _covers(key, d)) for d in self._declared)
        if not allowed:
            raise UndeclaredParamError(
                f"stage {self._stage} reads {key}, which is not among its params "
                f"{list(self._declared)}: declare it in PARAMS of pipeline/{self._stage}.py "
                "and under the stage's params: in dvc.yaml"
            )

    def hash(self, *keys: str) -> str:
        """Return the wrapped config's hash of ``keys``, each of which must be declared."""
        for key in keys:
            self._check(f"{self._prefix}{key}", group=True)
            self._reads.add(f"{self._prefix}{key}")
        return self._target.hash(*keys)

    def to_dict(self) -> dict[str, Any]:
        """Return the declared keys (and the paths) as nested plain dicts."""
        full = self._target.to_dict()
        for key in self._declared:
            self._reads.add(key)
        return select_keys(full, [*self._declared, *ALWAYS_READABLE])

    def write_audit(self) -> None:
        """Write the keys read so far to ``$MNIST_SOFTMAX_PARAMS_AUDIT/<stage>.json``, if set."""
        folder = os.environ.get(AUDIT_ENV)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            reads = sorted(k for k in self._reads if k.split(".")[0] not in ALWAYS_READABLE)
            (Path(folder) / f"{self._stage}.json").write_text(json.dumps(reads, indent=1))
