"""make-batch: drawn batches are what the spec asks, written whole or not at all, broken on cue."""

from __future__ import annotations

import csv
import gzip
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, limited_python, read_only
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from mnist_softmax.commands.make_batch import main
from mnist_softmax.data.idx import parse_idx
from mnist_softmax.errors import ConfigError, DataError, StorageError
from mnist_softmax.inbox.batch_maker import (
    IMAGES_GZ,
    LABELS_CSV,
    LABELS_GZ,
    READY,
    BatchSpec,
    draw_batch,
    load_source,
    transform_images,
    write_batch,
)

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
DIGITS = [f"d{i}" for i in range(10)]  # class names unlike the indices, so the csv tells them apart


@pytest.fixture(scope="module")
def mnist_test(mnist_raw) -> tuple[np.ndarray, np.ndarray]:
    return load_source(mnist_raw, "test")


@pytest.fixture(scope="module")
def base(mnist_raw) -> tuple[np.ndarray, np.ndarray]:
    """Twelve training images: none of them is a test image, so a leak is the corruption's."""
    images, labels = load_source(mnist_raw, "train")
    return images[:12].copy(), labels[:12].copy()


def read_batch(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a batch back with the plain libraries (gzip + parse_idx, PIL + csv)."""
    if (folder / IMAGES_GZ).exists():
        return tuple(parse_idx(gzip.decompress((folder / f).read_bytes()), f)
                     for f in (IMAGES_GZ, LABELS_GZ))  # fmt: skip
    with (folder / LABELS_CSV).open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "label"]
    pngs = sorted(folder.glob("*.png"))
    assert [r[0] for r in rows[1:]] == [p.name for p in pngs][: len(rows) - 1]
    images = [np.asarray(Image.open(p)) for p in pngs]
    assert all(Image.open(p).mode == "L" for p in pngs)
    stacked = np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)
    return stacked, np.array([int(r[1]) for r in rows[1:]], dtype=np.uint8)


def hidden(inbox: Path) -> list[str]:
    return [p.name for p in inbox.iterdir() if p.name.startswith(".")]


def test_load_source_reads_both_parts_in_file_order(mnist_raw):
    train_X, train_y = load_source(mnist_raw, "train")
    test_X, test_y = load_source(mnist_raw, "test")
    assert train_X.shape == (60000, 28, 28) and test_X.shape == (10000, 28, 28)
    assert train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # LeCun's first labels
    assert test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_load_source_without_fetch_says_what_to_run(tmp_path):
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.* run `dvc repro fetch` first"):
        load_source(tmp_path, "test")


def test_draw_takes_distinct_images_of_the_chosen_classes_with_their_own_labels(mnist_test):
    X, y = mnist_test
    images, labels = draw_batch(X, y, BatchSpec("b", count=300, source="test", classes=(3, 5, 8)))
    assert images.shape == (300, 28, 28) and images.dtype == labels.dtype == np.uint8
    assert set(labels.tolist()) == {3, 5, 8}
    label_of = {x.tobytes(): int(t) for x, t in zip(X, y, strict=True)}
    assert [label_of[x.tobytes()] for x in images] == labels.tolist()
    assert len({x.tobytes() for x in images}) == 300  # without replacement


@pytest.mark.parametrize("noise", [0.1, 0.25, 1.0])
def test_label_noise_changes_exactly_its_share_of_labels(mnist_test, noise):
    clean = draw_batch(*mnist_test, BatchSpec("b", count=203, seed=3))
    noisy = draw_batch(*mnist_test, BatchSpec("b", count=203, seed=3, label_noise=noise))
    np.testing.assert_array_equal(noisy[0], clean[0])
    assert (noisy[1] != clean[1]).sum() == round(noise * 203)
    assert noisy[1].max() <= 9


def test_the_seed_fixes_every_byte(mnist_test, tmp_path):
    spec = BatchSpec("a", count=50, shift_px=2, rotate_deg=10, label_noise=0.2, seed=7)
    for name, seed in [("a", 7), ("b", 7), ("c", 8)]:
        batch = draw_batch(*mnist_test, replace(spec, name=name, seed=seed))
        write_batch(*batch, tmp_path, BatchSpec(name))
    a, b, c = ((tmp_path / n / IMAGES_GZ).read_bytes() for n in "abc")
    assert a == b and a != c
    assert a[4:8] == bytes(4)  # gzip stores no timestamp: the same bytes on another day too
    assert (tmp_path / "a" / LABELS_GZ).read_bytes() == (tmp_path / "b" / LABELS_GZ).read_bytes()


def test_no_shift_no_rotation_is_an_exact_copy(mnist_test):
    X = mnist_test[0][:20]
    out = transform_images(X, 0.0, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(out, X)
    assert not np.shares_memory(out, X)


def test_shift_moves_each_digit_within_bounds_and_keeps_its_ink(mnist_test):
    X = mnist_test[0][:200]
    out = transform_images(X, 2.0, 0.0, np.random.default_rng(1))
    moved = np.array([ndimage.center_of_mass(a) for a in out])
    moved -= [ndimage.center_of_mass(a) for a in X]
    assert np.abs(moved).max() <= 2.05 and np.abs(moved).mean() > 0.7  # uniform in [-2, 2]
    turned = transform_images(X, 2.0, 10.0, np.random.default_rng(1))
    for images in (out, turned):
        assert (images != X).any(axis=(1, 2)).all()
        ink = images.sum(axis=(1, 2)) / X.sum(axis=(1, 2))
        assert ink.min() > 0.85 and ink.max() < 1.15


def test_draw_refuses_more_images_than_the_classes_hold(mnist_test):
    with pytest.raises(DataError, match="fewer than count = 2000"):
        draw_batch(*mnist_test, BatchSpec("b", count=2000, source="test", classes=(5,)))


@pytest.mark.parametrize(
    "field, value",
    [("count", -1), ("count", 2.5), ("label_noise", 1.5), ("classes", (3, 10)), ("classes", ()),
     ("shift_px", -1.0), ("fmt", "jpeg"), ("corrupt", "wrong"), ("source", "val")],
)  # fmt: skip
def test_spec_names_the_value_out_of_range(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} = "):
        BatchSpec("b", **{field: value})


@pytest.mark.parametrize("fmt", ["idx", "png"])
def test_written_batch_reads_back_complete_with_ready_last(base, tmp_path, fmt):
    path = write_batch(*base, tmp_path, BatchSpec("b1", fmt=fmt))
    assert path == tmp_path / "b1" and hidden(tmp_path) == []
    images, labels = read_batch(path)
    np.testing.assert_array_equal(images, base[0])
    np.testing.assert_array_equal(labels, base[1])
    assert (path / READY).stat().st_size == 0
    assert max(p.stat().st_mtime_ns for p in path.iterdir()) == (path / READY).stat().st_mtime_ns


def test_png_labels_can_be_class_names(base, tmp_path):
    path = write_batch(*base, tmp_path, BatchSpec("b1", fmt="png"), class_names=DIGITS)
    rows = (path / LABELS_CSV).read_text().splitlines()
    assert rows[1:] == [f"{i:05d}.png,d{y}" for i, y in enumerate(base[1])]


def test_a_name_in_use_is_refused_and_left_untouched(base, tmp_path):
    first = write_batch(*base, tmp_path, BatchSpec("b1"))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in first.iterdir()}
    with pytest.raises(DataError, match="b1 already exists"):
        write_batch(base[0][:3], base[1][:3], tmp_path, BatchSpec("b1", fmt="png"))
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in first.iterdir()} == before
    assert hidden(tmp_path) == []


EXPECTED = {  # what each array-level corruption must leave on disk, from the images and labels
    "none": lambda X, y: (X, y),
    "wrong-shape": lambda X, y: (X[:, :, :27], y),
    "labels-out-of-range": lambda X, y: (X, np.r_[11, y[1:]]),
    "count-mismatch": lambda X, y: (X, y[:-1]),
    "duplicate-images": lambda X, y: (np.r_[X[:1], X[:1], X[2:]], np.r_[y[0], y[0], y[2:]]),
    "empty": lambda X, y: (X[:0], y[:0]),
}


@pytest.mark.parametrize("fmt", ["idx", "png"])
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_array_corruptions_write_what_they_say(base, tmp_path, fmt, kind):
    images, labels = read_batch(write_batch(*base, tmp_path, BatchSpec("b", fmt=fmt, corrupt=kind)))
    want_images, want_labels = EXPECTED[kind](*base)
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    assert images.shape[1:] == want_images.shape[1:]  # an empty batch keeps 28 x 28 (x 27)


@pytest.mark.parametrize("fmt", ["idx", "png"])
def test_test_leak_puts_an_exact_test_image_first(base, mnist_test, tmp_path, fmt):
    test_X = mnist_test[0]
    spec = BatchSpec("b", fmt=fmt, corrupt="test-leak")
    images, _ = read_batch(write_batch(*base, tmp_path, spec, test_images=test_X))
    in_test = [(test_X == x).all(axis=(1, 2)).any() for x in (images[0], base[0][0])]
    assert in_test == [True, False]
    np.testing.assert_array_equal(images[1:], base[0][1:])


def test_wrong_magic_changes_only_the_images_magic(base, tmp_path):
    good, bad = (write_batch(*base, tmp_path, BatchSpec(n, corrupt=k))
                 for n, k in [("good", "none"), ("bad", "wrong-magic")])  # fmt: skip
    raw_good, raw_bad = (gzip.decompress((f / IMAGES_GZ).read_bytes()) for f in (good, bad))
    assert raw_bad[:4] != raw_good[:4] == b"\x00\x00\x08\x03" and raw_bad[4:] == raw_good[4:]
    with pytest.raises(DataError, match="wrong IDX magic"):
        parse_idx(raw_bad, IMAGES_GZ)
    assert (bad / LABELS_GZ).read_bytes() == (good / LABELS_GZ).read_bytes()


def test_truncated_gzip_is_half_the_file_and_does_not_decompress(base, tmp_path):
    good, bad = (write_batch(*base, tmp_path, BatchSpec(n, corrupt=k))
                 for n, k in [("good", "none"), ("bad", "truncated-gzip")])  # fmt: skip
    cut = (bad / IMAGES_GZ).read_bytes()
    assert cut == (good / IMAGES_GZ).read_bytes()[: len(cut)]
    assert len(cut) == (good / IMAGES_GZ).stat().st_size // 2
    with pytest.raises((EOFError, gzip.BadGzipFile)):
        gzip.decompress(cut)


def test_bad_png_is_one_file_pil_cannot_open(base, tmp_path):
    path = write_batch(*base, tmp_path, BatchSpec("b", fmt="png", corrupt="bad-png"))
    assert (path / "00000.png").read_bytes() == b"not an image"
    with pytest.raises(UnidentifiedImageError):
        Image.open(path / "00000.png")
    opened = [np.asarray(Image.open(path / f"{i:05d}.png")) for i in range(1, 12)]
    np.testing.assert_array_equal(opened, base[0][1:])


@pytest.mark.parametrize(
    "name, fmt, corrupt, n, reason",
    [("b", "png", "truncated-gzip", 12, "needs format idx"),
     ("b", "png", "wrong-magic", 12, "needs format idx"),
     ("b", "idx", "bad-png", 12, "needs format png"),
     ("b", "idx", "test-leak", 12, "needs the MNIST test images"),
     ("b", "idx", "duplicate-images", 1, "at least 2 images"),
     ("../b", "idx", "none", 12, "must match"),
     (".b", "idx", "none", 12, "must match")],
)  # fmt: skip
def test_a_refused_request_leaves_the_inbox_empty(base, tmp_path, name, fmt, corrupt, n, reason):
    with pytest.raises(DataError, match=reason):
        write_batch(base[0][:n], base[1][:n], tmp_path, BatchSpec(name, fmt=fmt, corrupt=corrupt))
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_inbox_is_one_storage_error_and_leaves_nothing(base, tmp_path):
    with read_only(tmp_path), pytest.raises(StorageError, match=f"cannot write {tmp_path / 'b'}"):
        write_batch(*base, tmp_path, BatchSpec("b"))
    assert list(tmp_path.iterdir()) == []


def test_a_write_failing_halfway_removes_the_partial_folder(mnist_raw, tmp_path):
    inbox = tmp_path / "inbox"
    code = (
        "from mnist_softmax.inbox.batch_maker import BatchSpec, load_source, write_batch\n"
        f"X, y = load_source({str(mnist_raw)!r}, 'test')\n"
        f"write_batch(X[:500], y[:500], {str(inbox)!r}, BatchSpec('b'))\n"
    )
    proc = limited_python(code, fsize=20_000, env=ENV)  # the images .gz is ~130 kB
    assert proc.returncode == 1, proc.stderr
    assert "File too large (EFBIG)" in proc.stderr
    assert list(inbox.iterdir()) == []


def make_batch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mnist_softmax.cli", "make-batch", *args]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)


def test_command_writes_the_batch_and_says_so_in_one_line(mnist_raw, tmp_path):
    proc = make_batch("new-1", "--shift", "2", "--rotate", "10", "--raw-dir", str(mnist_raw),
                      "--inbox", "inbox", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        "wrote inbox/new-1: 500 images (idx), labels 0..9, shift 2 px, rotate 10 deg, "
        "corrupt none\n"
    )
    images, labels = read_batch(tmp_path / "inbox" / "new-1")
    assert images.shape == (500, 28, 28) and labels.shape == (500,)


def test_command_without_fetched_data_is_one_error_line_exit_3(tmp_path):
    proc = make_batch("b", "--raw-dir", "missing", "--inbox", "inbox", cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [
        "[make-batch] error: missing/train-images-idx3-ubyte, missing/train-labels-idx1-ubyte "
        "not found: run `dvc repro fetch` first"
    ]
    assert not (tmp_path / "inbox").exists()


def test_command_unknown_corruption_exits_2(tmp_path):
    proc = make_batch("b", "--corrupt", "wrong-colour", cwd=tmp_path)
    assert proc.returncode == 2 and "invalid choice: 'wrong-colour'" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [(["--count", "-5"], "count = -5"), (["--label-noise", "1.01"], "label_noise = 1.01"),
     (["--classes", "3,10"], r"classes = \(3, 10\)"), (["--classes", "3,x"], "--classes")],
)  # fmt: skip
def test_command_out_of_range_values_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(["b", *args])
    assert info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
