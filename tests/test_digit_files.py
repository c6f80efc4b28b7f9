"""Reading what ``predict`` is given: every input kind, and one clear refusal per bad file."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_softmax.data.digit_files import read_digits
from mnist_softmax.data.digit_image import normalize_digit
from mnist_softmax.errors import DataError


@pytest.fixture(scope="module")
def digits(mnist) -> np.ndarray:
    return mnist["test_images"][:20]


def png_header(width: int, height: int) -> bytes:
    """A PNG holding only its header: PIL reads the size without decoding any pixel."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _scan(digit: np.ndarray, scale: int = 6) -> Image.Image:
    """Dark ink on white paper, blown up and off-centre, as a scan or photo would be."""
    big = Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    sheet = Image.new("L", (28 * scale + 60, 28 * scale + 20), 255)
    sheet.paste(big, (50, 5))
    return sheet


@pytest.mark.parametrize(
    ("suffix", "mode"), [(".png", "L"), (".jpg", "RGB"), (".bmp", "RGB"), (".gif", "P")]
)
def test_image_files_of_every_kind_become_one_normalised_digit(tmp_path, digits, suffix, mode):
    path = tmp_path / f"digit{suffix}"
    _scan(digits[0]).convert(mode).save(path)
    batch = read_digits(path)
    assert batch.pixels.shape == (1, 784) and batch.pixels.dtype == np.uint8
    assert not batch.indexed
    expected = normalize_digit(np.asarray(_scan(digits[0]))).ravel().astype(float)
    assert np.corrcoef(batch.pixels[0].astype(float), expected)[0, 1] > 0.97  # jpeg is lossy


def test_kind_is_told_by_content_not_by_name(tmp_path, digits):
    path = tmp_path / "really-a-jpeg.png"
    _scan(digits[1]).save(path, format="JPEG")
    assert read_digits(path).pixels.shape == (1, 784)


def test_idx_gz_raw_and_npy_arrays_keep_every_image_untouched(
    tmp_path, shared_mnist, mnist_raw, digits
):
    gz = shared_mnist / "t10k-images-idx3-ubyte.gz"
    raw = mnist_raw / "t10k-images-idx3-ubyte"
    np.save(tmp_path / "stack.npy", digits)
    np.save(tmp_path / "rows.npy", digits.reshape(len(digits), 784).astype(np.float32))
    for path, n in ((gz, 10000), (raw, 10000), (tmp_path / "stack.npy", 20)):
        batch = read_digits(path)
        assert batch.indexed and batch.pixels.shape == (n, 784) and batch.pixels.dtype == np.uint8
        np.testing.assert_array_equal(batch.pixels[:20], digits.reshape(20, 784))
    rows = read_digits(tmp_path / "rows.npy").pixels
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(rows, digits.reshape(20, 784))


BAD_FILES = {
    "empty.png": (b"", "empty file"),
    "notes.png": (b"just some text, no image\n", "not an image, IDX or .npy file"),
    "zero.png": (png_header(0, 10), "PNG with an unreadable header"),
    "huge.png": (png_header(8000, 7000), "8000x7000 pixels is over the limit of 50 megapixels"),
    "bomb.png": (png_header(30000, 30000), "over the limit of 50 megapixels"),
    "labels.gz": (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02\x07\x02"), r"shape \(2,\)"),
    "cut.gz": (gzip.compress(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x05" * 3)[:-9], "truncated"),
    "short-idx": (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c\x01", "trunc"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_refused_in_one_line_naming_the_file(tmp_path, name):
    content, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=reason) as err:
        read_digits(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_truncated_image_missing_file_and_blank_page(tmp_path, digits):
    png = tmp_path / "digit.png"
    _scan(digits[0]).save(png)
    cut = tmp_path / "cut.png"
    cut.write_bytes(png.read_bytes()[:300])
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 40), 255).save(blank)
    cases = ((cut, "truncated"), (tmp_path / "absent.png", "cannot read"), (blank, "no ink"))
    for path, reason in cases:
        with pytest.raises(DataError, match=f"^{path}: .*{reason}"):
            read_digits(path)


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.zeros((3, 28, 27), np.uint8), r"shape \(3, 28, 27\), expected \(n, 28, 28\) or"),
        (np.zeros((3, 783)), r"shape \(3, 783\)"),
        (np.zeros(784), r"shape \(784,\)"),
        (np.zeros((0, 784)), "holds no images"),
        (np.full((2, 784), 256.0), "outside 0..255"),
        (np.full((2, 784), np.nan), "outside 0..255"),
        (np.array([["a"] * 784]), "dtype <U1"),
        (np.array([[None] * 784]), "not a readable .npy array"),
    ],
)
def test_wrong_arrays_are_refused(tmp_path: Path, array: np.ndarray, reason: str):
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(DataError, match=reason):
        read_digits(path)
