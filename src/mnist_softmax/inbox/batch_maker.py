"""Make inbox batches that look like new data (shifted, rotated, skewed, noisy) or are broken.

Demos need realistic batches and the validator needs ones it must refuse. A batch is written
whole into a hidden ``.<name>.partial-<random>`` folder, ``READY`` last, then renamed into place.
"""

from __future__ import annotations

import gzip
import io
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from mnist_softmax.data.idx import check_images_labels, read_idx
from mnist_softmax.errors import ConfigError, DataError, storage_error
from mnist_softmax.inbox.batch_files import IMAGES, LABELS, LABELS_CSV, NAME_PATTERN, READY

CORRUPTIONS = ("none", "wrong-magic", "wrong-shape", "labels-out-of-range", "count-mismatch",
               "truncated-gzip", "bad-png", "duplicate-images", "test-leak", "empty")  # fmt: skip
N_CLASSES = 10
IMAGES_GZ, LABELS_GZ = f"{IMAGES}.gz", f"{LABELS}.gz"  # the inbox's names (batch_files)
SOURCE_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}  # fmt: skip
FORMAT_ONLY = {"truncated-gzip": "idx", "bad-png": "png", "wrong-magic": "idx"}
MIN_IMAGES = {"duplicate-images": 2, "labels-out-of-range": 1, "count-mismatch": 1,
              "test-leak": 1, "bad-png": 1}  # fmt: skip
LITTLE_ENDIAN_MAGIC = b"\x03\x08\x00\x00"  # 0x00000803 as a little-endian writer stores it
OUT_OF_RANGE = 11


@dataclass(frozen=True)
class BatchSpec:
    """What batch to make; ranges are checked here, once, so every caller gets the same message."""

    name: str
    count: int = 500
    source: str = "train"  # MNIST part the images are drawn from: "train" or "test"
    shift_px: float = 0.0  # max |shift| per axis, pixels
    rotate_deg: float = 0.0  # max |rotation|, degrees
    classes: tuple[int, ...] | None = None  # draw only these labels (skew); None: all
    label_noise: float = 0.0  # share of labels replaced by a different class
    fmt: str = "idx"  # "idx" or "png"
    corrupt: str = "none"  # one of CORRUPTIONS
    seed: int = 0

    def __post_init__(self) -> None:
        classes_ok = self.classes is None or (
            len(self.classes) > 0 and all(0 <= c < N_CLASSES for c in self.classes)
        )
        checks = {
            "count": (_whole(self.count), "an integer >= 0"),
            "source": (self.source in SOURCE_FILES, f"one of {tuple(SOURCE_FILES)}"),
            "shift_px": (0 <= self.shift_px < np.inf, "a number >= 0"),
            "rotate_deg": (0 <= self.rotate_deg < np.inf, "a number >= 0"),
            "classes": (classes_ok, f"labels in 0..{N_CLASSES - 1}, at least one"),
            "label_noise": (0 <= self.label_noise <= 1, "a share between 0 and 1"),
            "fmt": (self.fmt in ("idx", "png"), "'idx' or 'png'"),
            "corrupt": (self.corrupt in CORRUPTIONS, f"one of {', '.join(CORRUPTIONS)}"),
            "seed": (_whole(self.seed), "an integer >= 0"),
        }
        for key, (ok, allowed) in checks.items():
            if not ok:
                raise ConfigError(f"{key} = {getattr(self, key)!r}: expected {allowed}")


def _whole(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def transform_images(
    images: np.ndarray, shift_px: float, rotate_deg: float, rng: np.random.Generator
) -> np.ndarray:
    """Rotate then shift each image by its own random amount, as a new hand would place it.

    images : ndarray of shape (n, 28, 28), uint8 -> same shape, uint8 (bilinear, clipped).
    """
    if shift_px == 0 and rotate_deg == 0:
        return images.copy()
    angles = rng.uniform(-rotate_deg, rotate_deg, size=len(images))
    shifts = rng.uniform(-shift_px, shift_px, size=(len(images), 2))
    out = np.empty_like(images)
    for i, image in enumerate(images.astype(np.float64)):
        turned = ndimage.rotate(image, angles[i], reshape=False, order=1)
        moved = ndimage.shift(turned, shifts[i], order=1)
        out[i] = np.clip(np.rint(moved), 0, 255)
    return out


def draw_batch(
    images: np.ndarray, labels: np.ndarray, spec: BatchSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``spec.count`` images without replacement, transform them, then flip some labels.

    images : (N, 28, 28) uint8, labels : (N,) -> (count, 28, 28) uint8, (count,) uint8. Noise
    comes last, so the same seed gives the same images with and without it.
    """
    rng = np.random.default_rng(spec.seed)
    pool = np.flatnonzero(np.isin(labels, spec.classes or range(N_CLASSES)))
    if spec.count > len(pool):
        raise DataError(f"{spec.source} has {len(pool)} images of the chosen classes, "
                        f"fewer than count = {spec.count}")  # fmt: skip
    idx = rng.choice(pool, size=spec.count, replace=False)
    drawn = transform_images(images[idx], spec.shift_px, spec.rotate_deg, rng)
    y = labels[idx].astype(np.uint8)
    flip = rng.choice(spec.count, size=round(spec.label_noise * spec.count), replace=False)
    y[flip] = (y[flip] + rng.integers(1, N_CLASSES, size=len(flip))) % N_CLASSES
    return drawn, y


def write_batch(
    images: np.ndarray,
    labels: np.ndarray,
    inbox: Path,
    spec: BatchSpec,
    class_names: list[str] | None = None,
    test_images: np.ndarray | None = None,
) -> Path:
    """Write the batch into ``inbox/<spec.name>`` whole or not at all, with ``spec.corrupt``.

    ``class_names`` puts names instead of indices in a PNG batch's ``labels.csv``;
    ``test_images`` (MNIST test images) is needed by the ``test-leak`` corruption only.
    """
    final = Path(inbox) / spec.name
    n_classes = len(class_names) if class_names else N_CLASSES
    check_images_labels(images, labels, n_classes, (28, 28), spec.name)
    _check_request(spec, final, len(images), test_images)
    images, labels = _corrupt_arrays(images, labels, spec, test_images)
    encode = _idx_files if spec.fmt == "idx" else _png_files
    _publish(encode(images, labels, spec.corrupt, class_names), final)
    return final


def _check_request(spec: BatchSpec, final: Path, n: int, test_images: np.ndarray | None) -> None:
    if not NAME_PATTERN.fullmatch(spec.name):  # the name ingest accepts, no other
        raise DataError(f"batch name {spec.name!r} must match {NAME_PATTERN.pattern}")
    if final.exists() or final.is_symlink():
        raise _exists(final)
    if FORMAT_ONLY.get(spec.corrupt, spec.fmt) != spec.fmt:
        raise DataError(f"corrupt {spec.corrupt} needs format {FORMAT_ONLY[spec.corrupt]}")
    if spec.corrupt == "test-leak" and (test_images is None or len(test_images) == 0):
        raise DataError("corrupt test-leak needs the MNIST test images (test_images)")
    if n < MIN_IMAGES.get(spec.corrupt, 0):
        raise DataError(f"corrupt {spec.corrupt} needs at least {MIN_IMAGES[spec.corrupt]} images")


def _exists(final: Path) -> DataError:
    return DataError(f"{final} already exists: choose another batch name")


def _corrupt_arrays(
    images: np.ndarray, labels: np.ndarray, spec: BatchSpec, test_images: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the corruptions that live in the arrays, on copies; byte-level ones come later."""
    images, labels, kind = images.copy(), labels.astype(np.uint8), spec.corrupt
    if kind == "wrong-shape":
        images = images[:, :, :27]
    elif kind == "labels-out-of-range":
        labels[0] = OUT_OF_RANGE
    elif kind == "count-mismatch":
        labels = labels[:-1]
    elif kind == "duplicate-images":
        images[1], labels[1] = images[0], labels[0]  # a true duplicate record
    elif kind == "test-leak":
        images[0] = test_images[np.random.default_rng(spec.seed).integers(len(test_images))]
    elif kind == "empty":
        images, labels = images[:0], labels[:0]
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic 00 00 08 ndim, big-endian uint32 dims, payload."""
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    return bytes([0, 0, 0x08, array.ndim]) + dims + np.ascontiguousarray(array).tobytes()


def _idx_files(
    images: np.ndarray, labels: np.ndarray, corrupt: str, class_names: list[str] | None
) -> dict[str, bytes]:
    """Encode the IDX pair; IDX labels are indices whatever ``class_names`` says."""
    raw = idx_bytes(images)
    if corrupt == "wrong-magic":
        raw = LITTLE_ENDIAN_MAGIC + raw[4:]
    packed = gzip.compress(raw, mtime=0)  # mtime 0: the same seed gives the same bytes
    if corrupt == "truncated-gzip":
        packed = packed[: len(packed) // 2]
    return {IMAGES_GZ: packed, LABELS_GZ: gzip.compress(idx_bytes(labels), mtime=0)}


def _png_files(
    images: np.ndarray, labels: np.ndarray, corrupt: str, class_names: list[str] | None
) -> dict[str, bytes]:
    names = [f"{i:05d}.png" for i in range(len(images))]
    files = {name: _png_bytes(image) for name, image in zip(names, images, strict=True)}
    if corrupt == "bad-png":
        files[names[0]] = b"not an image"
    text = [class_names[y] if class_names and y < len(class_names) else str(y) for y in labels]
    rows = [f"{names[i]},{label}\n" for i, label in enumerate(text)]  # count-mismatch: one fewer
    return {**files, LABELS_CSV: ("file,label\n" + "".join(rows)).encode()}


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _publish(files: dict[str, bytes], final: Path) -> None:
    """Write ``files`` and ``READY`` into a hidden folder, then rename it to ``final``."""
    tmp = final.parent / f".{final.name}.partial-{secrets.token_hex(8)}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        for name, blob in files.items():
            (tmp / name).write_bytes(blob)
        (tmp / READY).touch()  # last: its presence says the batch is complete
        tmp.rename(final)  # atomic; fails on a non-empty folder that appeared meanwhile
    except OSError as exc:
        if final.exists():
            raise _exists(final) from None
        raise storage_error(final, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_source(raw_dir: Path, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the decompressed MNIST ``source`` part ("train" or "test") the fetch stage keeps."""
    paths = [Path(raw_dir) / name for name in SOURCE_FILES[source]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{', '.join(missing)} not found: run `dvc repro fetch` first")
    images, labels = (read_idx(path) for path in paths)
    check_images_labels(images, labels, N_CLASSES, (28, 28), source)
    return images, labels
