"""IDX parsing: good files parse, every kind of corruption is named."""

import gzip
import struct

import numpy as np
import pytest

from mnist_softmax.data.idx import check_images_labels, gunzip, parse_idx
from mnist_softmax.errors import DataError


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def test_parse_roundtrip_images():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    parsed = parse_idx(idx_bytes(images), "x")
    np.testing.assert_array_equal(parsed, images)


def test_parse_big_endian_int32():
    values = np.array([1, -2, 70000], dtype=">i4")
    np.testing.assert_array_equal(parse_idx(idx_bytes(values, 0x0C), "x"), [1, -2, 70000])


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"\x00\x00\x07\x01" + b"\x00" * 8, "magic"),
        (b"PK\x03\x04", "magic"),
        (b"\x00\x00\x08\x03\x00\x00", "header"),
        (idx_bytes(np.zeros((2, 3), np.uint8))[:-1], "truncated"),
        (idx_bytes(np.zeros((2, 3), np.uint8)) + b"\x00", "padded"),
    ],
)
def test_parse_rejects_corrupt_idx(blob, reason):
    with pytest.raises(DataError, match=reason):
        parse_idx(blob, "file.idx")


def test_gunzip_explains_html_page():
    with pytest.raises(DataError, match="HTML page"):
        gunzip(b"<!DOCTYPE html><html><body>Rate limited</body></html>", "u")


def test_gunzip_explains_truncation():
    blob = gzip.compress(b"\x00" * 10_000)
    with pytest.raises(DataError, match="truncated"):
        gunzip(blob[: len(blob) // 2], "u")


def test_gunzip_roundtrip():
    assert gunzip(gzip.compress(b"abc"), "u") == b"abc"


def test_labels_out_of_range():
    with pytest.raises(DataError, match="label 10 out of range"):
        check_images_labels(np.zeros((2, 28, 28)), np.array([3, 10]), 10, (28, 28), "train")


def test_count_mismatch():
    with pytest.raises(DataError, match="3 images but 2 labels"):
        check_images_labels(np.zeros((3, 28, 28)), np.array([1, 2]), 10, (28, 28), "train")


def test_wrong_image_shape():
    with pytest.raises(DataError, match="shape"):
        check_images_labels(np.zeros((2, 27, 28)), np.array([1, 2]), 10, (28, 28), "train")
