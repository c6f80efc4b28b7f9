"""Atomic writes: a failure mid-write (full disk, crash) leaves the old file and no temp file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import limited_python

from mnist_softmax.atomic import load_npz, read_json, save_npz, write_json
from mnist_softmax.errors import DataError


def test_json_roundtrip_is_sorted_and_readable(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"b": 1, "a": {"d": 2.5, "c": True}})
    assert path.read_text().index('"a"') < path.read_text().index('"b"')
    assert read_json(path) == {"a": {"c": True, "d": 2.5}, "b": 1}


def test_nan_is_refused_and_the_old_file_kept(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"acc": 0.9})
    with pytest.raises(ValueError):
        write_json(path, {"acc": float("nan")})
    assert json.loads(path.read_text()) == {"acc": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_file_size_limit_mid_write_is_one_line_naming_the_file(tmp_path):
    """A real EFBIG (RLIMIT_FSIZE, the disk-full of one process): old file kept, no temp left."""
    path = tmp_path / "report.csv"
    path.write_text("old,complete\n")
    proc = limited_python(
        f"from mnist_softmax.atomic import atomic_open\n"
        f"with atomic_open({str(path)!r}) as handle:\n"
        f"    handle.write('x' * 1_000_000)\n",
        fsize=100_000,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"StorageError: cannot write {path}: File too large (EFBIG): the file size limit was "
        "reached; free space or raise the limit"
    ]
    assert path.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_truncated_and_pickled_npz_are_data_errors_naming_the_file(tmp_path):
    good = tmp_path / "model.npz"
    save_npz(good, W=np.eye(3, dtype=np.float32))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a real truncated model file
    with pytest.raises(DataError, match=rf"{cut} is truncated or corrupt.*dvc repro"):
        load_npz(cut)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, X=np.array([{"a": 1}], dtype=object))  # allow_pickle defaults to True
    with pytest.raises(DataError, match=rf"{pickled} holds pickled objects"):
        load_npz(pickled)


def test_npz_has_no_pickles(tmp_path):
    path = tmp_path / "a.npz"
    save_npz(path, W=np.eye(2, dtype=np.float32), names=np.array(["x", "y"]))
    arrays = load_npz(path)
    assert arrays["W"].dtype == np.float32 and arrays["names"].tolist() == ["x", "y"]
    with pytest.raises(ValueError, match="pickle"):
        save_npz(tmp_path / "b.npz", bad=np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "b.npz").exists()
