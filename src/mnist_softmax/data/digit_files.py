"""Read the files ``mnist-softmax predict`` is given: images, IDX files and ``.npy`` arrays.

The kind is told by the first bytes, not the name (a ``.png`` that is really a JPEG still
reads). Photos and scans go through :func:`~mnist_softmax.data.digit_image.normalize_digit`,
MNIST's own normalisation; IDX and ``.npy`` arrays are taken as MNIST-format digits already.
Every refusal is a :class:`~mnist_softmax.errors.DataError` whose message names the file and
the reason, so the command can report it in one line and go on with the other files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_softmax.data.digit_image import normalize_digit
from mnist_softmax.data.idx import gunzip, parse_idx
from mnist_softmax.errors import DataError

MAX_PIXELS = 50_000_000  # larger images are refused before decoding (a photo is ~12 MP)
_GZIP, _NPY = b"\x1f\x8b", b"\x93NUMPY"
# image signatures, to tell a broken image (e.g. a 0x0 PNG, which PIL will not open) from a
# file that is no image at all
_IMAGE_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8": "JPEG", b"GIF8": "GIF", b"BM": "BMP"}


@dataclass(frozen=True)
class DigitBatch:
    """The digits of one input file, ready for the model.

    pixels : ndarray of shape (n_images, n_features), uint8 or float64 in 0..255
    indexed : True for IDX / ``.npy`` files (the output names each image's index)
    """

    path: str
    pixels: np.ndarray
    indexed: bool


def read_digits(path: str | Path, image_shape: tuple[int, int] = (28, 28)) -> DigitBatch:
    """Return the digits in ``path`` as rows of raw pixels, or raise DataError naming it."""
    name = str(path)
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise DataError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise DataError(f"{name}: empty file")
    n_features = int(np.prod(image_shape))
    if head.startswith((_GZIP, b"\x00\x00")):
        return DigitBatch(name, _check_stack(_read_idx(name, head), image_shape, name), True)
    if head.startswith(_NPY):
        return DigitBatch(name, _check_stack(_read_npy(name), image_shape, name), True)
    kind = next((k for magic, k in _IMAGE_MAGIC.items() if head.startswith(magic)), None)
    if tuple(image_shape) != (28, 28):
        raise DataError(f"{name}: images can only be normalised to 28x28, the model wants more")
    try:
        digit = normalize_digit(_read_image(name, kind))
    except ValueError as exc:  # blank or uniform: no ink to read
        raise DataError(f"{name}: {exc}") from None
    return DigitBatch(name, digit.reshape(1, n_features), False)


def _read_idx(name: str, head: bytes) -> np.ndarray:
    blob = Path(name).read_bytes()
    raw = gunzip(blob, name) if head.startswith(_GZIP) else blob
    return parse_idx(raw, name)


def _read_npy(name: str) -> np.ndarray:
    try:
        return np.load(name, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{name}: not a readable .npy array ({reason})") from None


def _check_stack(array: np.ndarray, image_shape: tuple[int, int], name: str) -> np.ndarray:
    """Return (n, n_features) raw pixels from (n, *image_shape) or (n, n_features) arrays."""
    n_features = int(np.prod(image_shape))
    shapes = (tuple(array.shape[1:]) in (tuple(image_shape), (n_features,))) and array.ndim >= 2
    if not shapes:
        expected = f"(n, {image_shape[0]}, {image_shape[1]}) or (n, {n_features})"
        raise DataError(f"{name}: array of shape {array.shape}, expected {expected}")
    if len(array) == 0:
        raise DataError(f"{name}: holds no images (shape {array.shape})")
    if array.dtype.kind not in "uif":
        raise DataError(f"{name}: array of dtype {array.dtype}, expected numbers (pixels 0..255)")
    if array.dtype != np.uint8:
        array = array.astype(np.float64)
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
            raise DataError(f"{name}: pixel values outside 0..255 (or not finite)")
    return array.reshape(len(array), n_features)


def _read_image(name: str, kind: str | None) -> np.ndarray:
    """Decode an image file into a grey (H, W) or RGBA (H, W, 4) array, checking its size."""
    limit = f"over the limit of {MAX_PIXELS // 1_000_000} megapixels"
    try:
        with Image.open(name) as image:  # reads the header only: the size before decoding
            width, height = image.size
            if width * height == 0:
                raise DataError(f"{name}: image of {width}x{height} pixels holds nothing")
            if width * height > MAX_PIXELS:
                raise DataError(f"{name}: image of {width}x{height} pixels is {limit}")
            image.seek(0)  # an animated GIF: its first frame
            image.load()
            mode = "L" if image.mode in ("1", "L") else "RGBA"
            return np.asarray(image.convert(mode))
    except UnidentifiedImageError:
        if kind:
            raise DataError(f"{name}: {kind} with an unreadable header (0 pixels?)") from None
        raise DataError(f"{name}: not an image, IDX or .npy file") from None
    except Image.DecompressionBombError:  # PIL refuses > 179 MP in open() itself
        raise DataError(f"{name}: image is {limit}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{name}: corrupt or truncated image ({exc})") from None
