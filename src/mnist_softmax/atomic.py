"""Atomic writes: a reader (or a killed process) never sees a half-written artefact.

Every output goes to a temporary file in the destination folder and is moved into place with
``os.replace``, which is atomic on POSIX within one file system (pooch's "verify, then move").
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from mnist_softmax.errors import DataError, StorageError, storage_error


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A local write failure (disk full, file size limit, read-only or forbidden folder) becomes
    one :class:`StorageError` naming ``path``: ``OSError: [Errno 27] File too large`` alone
    does not say which file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise storage_error(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        tmp_path.chmod(0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
        yield tmp_path
        tmp_path.replace(path)  # os.replace: atomic within one file system
    except (StorageError, FileNotFoundError):
        raise
    except OSError as exc:
        raise storage_error(path, exc) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def check_writable(folder: str | Path) -> None:
    """Fail now, naming ``folder``, if a file cannot be created in it (read-only, forbidden).

    Stages call it before their work, so a read-only output folder costs no training time.
    ``os.access`` is not enough: it says yes to root on a read-only bind mount's folder.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise storage_error(folder, exc) from None


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
    """Load every array of an ``.npz`` file with ``allow_pickle=False``.

    A truncated or corrupt file, or one holding pickled objects, is a :class:`DataError`
    naming it, not a ``BadZipFile`` or ``ValueError`` traceback.
    """
    with Path(path).open("rb") as handle:
        head = handle.read(6)
    if head[:2] != b"PK" and head != b"\x93NUMPY":  # np.load would try it as a pickle
        raise DataError(f"{path} is not an .npz file (it starts with {head!r}): delete it and "
                        "rerun `dvc repro`")  # fmt: skip
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        pickled = "pickle" in str(exc).lower()
        what = "holds pickled objects (refused)" if pickled else "is truncated or corrupt"
        raise DataError(
            f"{path} {what}: {str(exc).splitlines()[0]}; delete it and rerun `dvc repro`"
        ) from None


def load_stage_npz(path: str | Path, keys: tuple[str, ...], stage: str) -> dict[str, np.ndarray]:
    """Load a stage's ``.npz`` output, failing with what to rerun if it or an array is missing."""
    if not Path(path).is_file():
        raise DataError(f"{path} not found: run `dvc repro {stage}` first")
    arrays = load_npz(path)
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise DataError(f"{path} lacks the arrays {missing}: rerun `dvc repro {stage}`")
    return arrays
