"""Atomic writes: a reader (or a killed process) never sees a half-written artefact.

Every output goes to a temporary file in the destination folder and is moved into place with
``os.replace``, which is atomic on POSIX within one file system (pooch's "verify, then move").
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from mnist_softmax.errors import DataError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp_path
        tmp_path.replace(path)  # os.replace: atomic within one file system
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` on success."""
    with atomic_path(path) as tmp, tmp.open(mode) as handle:
        yield handle


def write_json(path: str | Path, data: Any) -> None:
    """Write sorted-key, indented JSON atomically (diffable metrics files for DVC)."""
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True, allow_nan=False)
        handle.write("\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    with Path(path).open() as handle:
        return json.load(handle)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Save arrays to an uncompressed ``.npz`` atomically (no pickled objects allowed).

    Object arrays are refused here rather than through ``np.savez(allow_pickle=False)``: NumPy
    before 2.2 has no such argument and would store it as an array named ``allow_pickle``.
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    pickled = [k for k, v in arrays.items() if v.dtype.hasobject]
    if pickled:
        raise ValueError(f"{path}: object arrays {pickled} would need pickle; not saved")
    with atomic_path(path, suffix=".npz") as tmp, tmp.open("wb") as handle:
        np.savez(handle, **arrays)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file with ``allow_pickle=False``."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def load_stage_npz(path: str | Path, keys: tuple[str, ...], stage: str) -> dict[str, np.ndarray]:
    """Load a stage's ``.npz`` output, failing with what to rerun if it or an array is missing."""
    if not Path(path).is_file():
        raise DataError(f"{path} not found: run `dvc repro {stage}` first")
    arrays = load_npz(path)
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise DataError(f"{path} lacks the arrays {missing}: rerun `dvc repro {stage}`")
    return arrays
