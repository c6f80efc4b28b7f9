"""Atomic writes: a failure mid-write (full disk, crash) leaves the old file and no temp file."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from mnist_softmax.atomic import atomic_open, load_npz, read_json, save_npz, write_json


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


def test_disk_full_mid_write_keeps_the_old_file(tmp_path):
    """ENOSPC cannot be provoked safely here, so the write raises it the way the OS would."""
    path = tmp_path / "report.csv"
    path.write_text("old,complete\n")
    with pytest.raises(OSError) as info, atomic_open(path) as handle:
        handle.write("new,half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC
    assert path.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_npz_has_no_pickles(tmp_path):
    path = tmp_path / "a.npz"
    save_npz(path, W=np.eye(2, dtype=np.float32), names=np.array(["x", "y"]))
    arrays = load_npz(path)
    assert arrays["W"].dtype == np.float32 and arrays["names"].tolist() == ["x", "y"]
    with pytest.raises(ValueError, match="pickle"):
        save_npz(tmp_path / "b.npz", bad=np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "b.npz").exists()
