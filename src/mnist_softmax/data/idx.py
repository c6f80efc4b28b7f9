"""The IDX file format of MNIST: parse and validate, so corrupt bytes fail with a clear reason.

Header (big-endian): two zero bytes, a dtype code, the number of dimensions, then one uint32 per
dimension; the payload is exactly ``prod(dims) * itemsize`` bytes (LeCun's MNIST page).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from mnist_softmax.errors import DataError

# IDX dtype code -> numpy dtype (multi-byte types are big-endian on disk)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def gunzip(blob: bytes, source: str) -> bytes:
    """Decompress gzip bytes, explaining HTML pages and truncation instead of a zlib error."""
    if blob[:2] != b"\x1f\x8b":
        head = blob[:64].lstrip().lower()
        kind = "an HTML page" if head.startswith((b"<!doctype", b"<html", b"<")) else "not gzip"
        raise DataError(f"{source}: got {kind} ({len(blob)} bytes), expected a .gz IDX file")
    try:
        return gzip.decompress(blob)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{source}: corrupt or truncated gzip ({len(blob)} bytes): {exc}") from None


def parse_idx(raw: bytes, source: str) -> np.ndarray:
    """Parse decompressed IDX bytes into an array of the header's dtype and shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{source}: wrong IDX magic {raw[:4].hex()!r} (expected 0000 08xx)")
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{source}: IDX header truncated or without dimensions (ndim={ndim})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{source}: IDX payload has {len(raw) - header} bytes, header dims {dims} "
            f"need {expected}: the file is truncated or padded"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Read a decompressed IDX file from disk."""
    return parse_idx(Path(path).read_bytes(), str(path))


def check_images_labels(
    images: np.ndarray, labels: np.ndarray, n_classes: int, image_shape: tuple[int, int], name: str
) -> None:
    """Check that an image file and its label file describe the same, well-formed records."""
    if images.ndim != 3 or tuple(images.shape[1:]) != tuple(image_shape):
        raise DataError(f"{name}: images have shape {images.shape}, expected (n, *{image_shape})")
    if labels.ndim != 1:
        raise DataError(f"{name}: labels have shape {labels.shape}, expected (n,)")
    if len(images) != len(labels):
        raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)]
        raise DataError(f"{name}: label {int(bad[0])} out of range 0..{n_classes - 1}")
