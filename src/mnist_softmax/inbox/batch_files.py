"""Read one batch folder of the inbox, in either form it may arrive in, collecting every problem.

A batch arrives as an IDX pair (``images-idx3-ubyte[.gz]`` + ``labels-idx1-ubyte[.gz]``, as
MNIST ships) or as PNG files plus ``labels.csv`` (``file,label``). A rejected batch's
``REASON.txt`` must name every problem at once (file, index, what), so the reader does not stop
at the first one: a person fixing an export should not have to resubmit it ten times.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_softmax.data.idx import gunzip_idx, parse_header, parse_idx
from mnist_softmax.errors import DataError

IMAGES, LABELS, LABELS_CSV = "images-idx3-ubyte", "labels-idx1-ubyte", "labels.csv"
READY = "READY"  # written last by the producer: a folder without it is still being copied
# batch names become file names and MLflow metric names: a safe alphabet, a bounded length
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_LISTED = 20  # problems of one kind listed one by one; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a batch: where (file, and index within it when it applies), what."""

    file: str
    what: str
    index: int | None = None

    def __str__(self) -> str:
        where = self.file if self.index is None else f"{self.file}[{self.index}]"
        return f"{where}: {self.what}"


class BatchProblems(DataError):
    """A batch that cannot be read; carries every problem found so far."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class BatchArrays:
    """A batch as read: images (n, height, width) uint8, labels (n,) int64, and its form.

    ``files`` names each image's PNG (so problems name the file); None for an IDX pair.
    """

    images: np.ndarray
    labels: np.ndarray
    form: str
    files: list[str] | None = None

    def where(self, index: int) -> tuple[str, int | None]:
        """The (file, index) a problem with image ``index`` is reported at."""
        return (IMAGES, index) if self.files is None else (self.files[index], None)

    def name_of(self, index: int) -> str:
        """How a problem's text names image ``index``: ``images-idx3-ubyte[7]`` or ``00007.png``."""
        file, at = self.where(index)
        return file if at is None else f"{file}[{at}]"


def inbox_folders(incoming: Path) -> tuple[list[Path], list[Path]]:
    """The inbox's batch folders by name: (complete ones, ones still waiting for READY).

    Hidden folders (a producer's temporary copy, an accepted batch being deleted) are neither.
    """
    if not incoming.is_dir():
        return [], []
    folders = sorted(p for p in incoming.iterdir() if p.is_dir() and not p.name.startswith("."))
    ready = [folder for folder in folders if (folder / READY).exists()]
    return ready, [folder for folder in folders if folder not in ready]


def per_index(file: str, indices: np.ndarray, what: str) -> list[Problem]:
    """One problem per index, the first ``MAX_LISTED`` of them, then one line counting the rest."""
    listed = [Problem(file, what, int(i)) for i in indices[:MAX_LISTED]]
    if len(indices) > MAX_LISTED:
        listed.append(Problem(file, f"... and {len(indices) - MAX_LISTED} more: {what}"))
    return listed


def read_batch(
    folder: Path, class_names: list[str], image_shape: tuple[int, int], max_images: int
) -> BatchArrays:
    """Read ``folder`` into arrays, or raise BatchProblems listing what is wrong with it."""
    has_idx = any((folder / f"{IMAGES}{ext}").exists() for ext in ("", ".gz"))
    has_png = (folder / LABELS_CSV).exists()
    if has_idx and has_png:
        raise BatchProblems([Problem(".", "holds both an IDX pair and labels.csv: which one?")])
    if has_idx:
        return _read_idx_pair(folder, len(class_names), image_shape, max_images)
    if has_png:
        return _read_png_folder(folder, class_names, image_shape, max_images)
    raise BatchProblems(
        [Problem(".", f"no {IMAGES}[.gz] + {LABELS}[.gz] pair and no {LABELS_CSV} + PNG files")]
    )


def _read_idx_file(
    folder: Path, stem: str, max_images: int, max_bytes: int, problems: list[Problem]
) -> np.ndarray | None:
    """Return the array of ``stem`` (gzip or raw), or None after recording why it is unreadable.

    The header's record count is checked against ``max_images`` before the payload is read, so
    an oversized (or bomb) file costs one header read and says which limit it broke.
    """
    for name in (f"{stem}.gz", stem):
        path = folder / name
        if not path.exists():
            continue
        try:
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as handle:
                header = parse_header(handle.read(4 + 4 * 3), name)
            if header.dims[0] > max_images:
                raise DataError(f"declares {header.dims[0]} records, more than "
                                f"data.inbox.max_images ({max_images})")  # fmt: skip
            if header.total_bytes > max_bytes:
                raise DataError(f"header declares shape {header.dims}: too large for a batch")
            if name.endswith(".gz"):
                buffer = io.BytesIO()
                gunzip_idx(path, buffer.write, max_bytes, name)
                return parse_idx(buffer.getvalue(), name)
            if path.stat().st_size > max_bytes:
                raise DataError(f"{path.stat().st_size} bytes, more than a batch may hold")
            return parse_idx(path.read_bytes(), name)
        except (EOFError, OSError, zlib.error) as exc:  # the header read of a broken gzip
            problems.append(Problem(name, f"corrupt or truncated gzip: {exc}"))
            return None
        except DataError as exc:
            problems.append(Problem(name, str(exc).removeprefix(f"{name}: ")))
            return None
    problems.append(Problem(f"{stem}[.gz]", "missing"))
    return None


def _read_idx_pair(
    folder: Path, n_classes: int, image_shape: tuple[int, int], max_images: int
) -> BatchArrays:
    problems: list[Problem] = []
    max_bytes = max_images * int(np.prod(image_shape)) + 1024
    images = _read_idx_file(folder, IMAGES, max_images, max_bytes, problems)
    labels = _read_idx_file(folder, LABELS, max_images, max_bytes, problems)
    if images is not None and (images.ndim != 3 or images.shape[1:] != tuple(image_shape)):
        problems.append(Problem(IMAGES, f"shape {images.shape}, expected (n, *{image_shape})"))
    if images is not None and images.dtype != np.uint8:
        problems.append(Problem(IMAGES, f"dtype {images.dtype}, expected uint8 pixels"))
    if labels is not None and labels.ndim != 1:
        problems.append(Problem(LABELS, f"shape {labels.shape}, expected (n,)"))
    if labels is not None and labels.ndim == 1:
        out = np.flatnonzero((labels < 0) | (labels >= n_classes))
        problems += per_index(LABELS, out, f"label out of range 0..{n_classes - 1}")
    if images is not None and labels is not None and len(images) != len(labels):
        problems.append(Problem(".", f"{len(images)} images but {len(labels)} labels"))
    if problems:
        raise BatchProblems(problems)
    return BatchArrays(images, labels.astype(np.int64), "idx")


def _label_index(value: object, class_names: list[str]) -> int | None:
    """A label given as a class index ("3") or a class name ("three"); None when neither."""
    text = str(value).strip()
    if text in class_names:
        return class_names.index(text)
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    return None


def _read_png(path: Path, image_shape: tuple[int, int]) -> np.ndarray | str:
    """The image as uint8 grayscale, or a string saying why it is not one."""
    try:
        with Image.open(path) as image:
            image.load()
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return f"not a readable image ({type(exc).__name__})"
    if pixels.shape != tuple(image_shape):
        return f"{pixels.shape[1]}x{pixels.shape[0]} pixels, expected {image_shape[1]}x" + str(
            image_shape[0]
        )
    return pixels


def _read_png_folder(
    folder: Path, class_names: list[str], image_shape: tuple[int, int], max_images: int
) -> BatchArrays:
    import pandas as pd  # here: an empty inbox (most ingest runs) need not pay ~0.3 s for it

    try:
        table = pd.read_csv(folder / LABELS_CSV, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BatchProblems([Problem(LABELS_CSV, f"not a CSV file: {exc}")]) from None
    if list(table.columns) != ["file", "label"]:
        raise BatchProblems(
            [Problem(LABELS_CSV, f"header {list(table.columns)}, expected file,label")]
        )
    if len(table) > max_images:
        raise BatchProblems([Problem(LABELS_CSV, f"{len(table)} rows, more than {max_images}")])
    problems: list[Problem] = []
    listed = set(table["file"])
    for extra in sorted({p.name for p in folder.glob("*.png")} - listed):
        problems.append(Problem(extra, f"has no row in {LABELS_CSV}"))
    images, labels, files = [], [], []
    for row, (name, label) in enumerate(zip(table["file"], table["label"], strict=True)):
        index = _label_index(label, class_names)
        if index is None:
            problems.append(Problem(LABELS_CSV, f"label {label!r} is not a class", row))
        path = folder / name
        if Path(name).name != name or not path.is_file():
            problems.append(Problem(LABELS_CSV, f"file {name!r} not found in the batch", row))
            continue
        pixels = _read_png(path, image_shape)
        if isinstance(pixels, str):
            problems.append(Problem(name, pixels))
            continue
        images.append(pixels)
        labels.append(index)
        files.append(name)
    if problems:
        raise BatchProblems(problems)
    stacked = np.stack(images) if images else np.zeros((0, *image_shape), np.uint8)
    return BatchArrays(stacked, np.asarray(labels, dtype=np.int64), "png", files)
