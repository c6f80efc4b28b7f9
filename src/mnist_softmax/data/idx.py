"""The IDX file format of MNIST: parse and validate, so corrupt bytes fail with a clear reason.

Header (big-endian): two zero bytes, a dtype code, the number of dimensions, then one uint32 per
dimension; the payload is exactly ``prod(dims) * itemsize`` bytes (LeCun's MNIST page).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
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


CHUNK = 1 << 20  # bytes per read: files are streamed, never held whole in memory
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class IdxHeader:
    """What an IDX header declares: element type, dimensions, and where the payload starts."""

    dtype: np.dtype
    dims: tuple[int, ...]
    offset: int

    @property
    def total_bytes(self) -> int:
        """Header plus payload: the exact size of a well-formed file."""
        return self.offset + int(np.prod(self.dims)) * self.dtype.itemsize


def parse_header(head: bytes, source: str) -> IdxHeader:
    """Parse the IDX header at the start of ``head`` (magic first, so a wrong one says so)."""
    _check_idx_magic(head, source)
    dtype, ndim = IDX_DTYPES[head[2]], head[3]
    offset = 4 + 4 * ndim
    if ndim == 0 or len(head) < offset:
        raise DataError(f"{source}: IDX header truncated or without dimensions (ndim={ndim})")
    dims = tuple(int(d) for d in np.frombuffer(head, dtype=">u4", count=ndim, offset=4))
    return IdxHeader(dtype, dims, offset)


def _check_idx_magic(head: bytes, source: str) -> None:
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
        raise DataError(f"{source}: wrong IDX magic {head[:4].hex()!r} (expected 0000 08xx)")


def _check_size(header: IdxHeader, size: int, source: str) -> None:
    if size != header.total_bytes:
        raise DataError(
            f"{source}: IDX payload has {size - header.offset} bytes, header dims "
            f"{header.dims} need {header.total_bytes - header.offset}: the file is truncated "
            "or padded"
        )


def gunzip(blob: bytes, source: str) -> bytes:
    """Decompress gzip bytes held in memory (small files, tests): see :func:`gunzip_idx`."""
    _check_gzip_magic(blob[:64], len(blob), source)
    try:
        return gzip.decompress(blob)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{source}: corrupt or truncated gzip ({len(blob)} bytes): {exc}") from None


def _check_gzip_magic(head: bytes, size: int, source: str) -> None:
    if head[:2] != GZIP_MAGIC:
        head = head.lstrip().lower()
        kind = "an HTML page" if head.startswith((b"<!doctype", b"<html", b"<")) else "not gzip"
        raise DataError(f"{source}: got {kind} ({size} bytes), expected a .gz IDX file")


def gunzip_idx(
    gz_path: Path, write: Callable[[bytes], object], max_bytes: int, source: str
) -> tuple[IdxHeader, str]:
    """Decompress an IDX ``.gz`` file chunk by chunk into ``write``; return (header, sha256).

    Checks, in this order, so each fault gets its own message: gzip magic (an HTML page),
    IDX magic, declared size against ``max_bytes`` (a decompression bomb stops at the header),
    then the decompressed size against the header (truncated or padded). Memory stays at one
    chunk whatever the file size.
    """
    with gz_path.open("rb") as handle:
        _check_gzip_magic(handle.read(64), gz_path.stat().st_size, source)
    digest, header, head, size = hashlib.sha256(), None, b"", 0
    try:
        with gzip.open(gz_path, "rb") as stream:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                if header is None:
                    head += chunk[:1024]
                    header = _header_within(head, max_bytes, source)
                size += len(chunk)
                if header is not None and size > header.total_bytes:
                    _check_size(header, size, source)  # padded: stop reading now
                digest.update(chunk)
                write(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{source}: corrupt or truncated gzip: {exc}") from None
    header = header or parse_header(head, source)
    _check_size(header, size, source)
    return header, digest.hexdigest()


def _header_within(head: bytes, max_bytes: int, source: str) -> IdxHeader | None:
    """Return the header once ``head`` holds it, refusing sizes above ``max_bytes``."""
    if len(head) < 4:
        return None
    _check_idx_magic(head, source)  # a wrong magic fails before any size check
    if len(head) < 4 + 4 * head[3]:
        return None
    header = parse_header(head, source)
    if header.total_bytes > max_bytes:
        raise DataError(
            f"{source}: IDX header declares {header.total_bytes / 1e6:.1f} MB, more than "
            f"data.max_file_mb ({max_bytes / 1e6:.1f} MB)"
        )
    return header


def parse_idx(raw: bytes, source: str) -> np.ndarray:
    """Parse decompressed IDX bytes into an array of the header's dtype and shape."""
    header = parse_header(raw, source)
    _check_size(header, len(raw), source)
    return np.frombuffer(raw, dtype=header.dtype, offset=header.offset).reshape(header.dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Read a decompressed IDX file from disk straight into its array (no bytes copy)."""
    path = Path(path)
    with path.open("rb") as handle:
        header = parse_header(handle.read(4 + 4 * 255), str(path))
        _check_size(header, path.stat().st_size, str(path))
        handle.seek(header.offset)
        data = np.fromfile(handle, dtype=header.dtype)
    return data.reshape(header.dims)


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
