"""Checks on a readable batch's content: its name, size, duplicates, and leakage into the test set.

The leakage guard compares exact pixel bytes: a batch holding a test image would train on the
benchmark and inflate every later test score, which no other check would reveal. Exact
duplicates only; near-duplicates (a shifted copy) are legitimate new data.
"""

from __future__ import annotations

import numpy as np

from mnist_softmax.config import InboxConfig
from mnist_softmax.inbox.batch_files import MAX_LISTED, NAME_PATTERN, BatchArrays, Problem


def pixel_keys(images: np.ndarray) -> list[bytes]:
    """One hashable key per image: its raw bytes (28x28 uint8 is 784 bytes, cheaper than a hash)."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    return [row.tobytes() for row in flat]


class TestIndex:
    """The test split's images by pixel bytes, built once per ingest run."""

    __test__ = False  # not a pytest class, whatever its name says

    def __init__(self, test_images: np.ndarray) -> None:
        self.first_index: dict[bytes, int] = {}
        for i, key in enumerate(pixel_keys(test_images)):
            self.first_index.setdefault(key, i)

    def find(self, images: np.ndarray) -> list[tuple[int, int]]:
        """Return (batch index, test index) of every batch image identical to a test image."""
        hits = ((i, self.first_index.get(key)) for i, key in enumerate(pixel_keys(images)))
        return [(i, j) for i, j in hits if j is not None]


def check_name(name: str) -> list[Problem]:
    """Batch names become file names and MLflow metric names: keep them to a safe alphabet."""
    if NAME_PATTERN.fullmatch(name):
        return []
    return [Problem(".", f"batch name {name!r} must match {NAME_PATTERN.pattern}")]


def check_content(batch: BatchArrays, inbox: InboxConfig, test_index: TestIndex) -> list[Problem]:
    """Every content problem of ``batch``: size bounds, duplicates inside it, test images in it."""
    n = len(batch.labels)
    if n == 0:
        return [Problem(".", "empty batch: no images")]
    problems = []
    if n < inbox.min_images:
        problems.append(Problem(".", f"{n} images, fewer than data.inbox.min_images"))
    if n > inbox.max_images:
        problems.append(Problem(".", f"{n} images, more than data.inbox.max_images"))
    first_seen: dict[bytes, int] = {}
    duplicates = []
    for i, key in enumerate(pixel_keys(batch.images)):
        if key in first_seen:
            duplicates.append((i, first_seen[key]))
        else:
            first_seen[key] = i
    named = [(i, batch.name_of(j)) for i, j in duplicates]
    problems += _capped(batch, named, "duplicates {}")
    leaks = test_index.find(batch.images)
    problems += _capped(batch, leaks, "identical to test image {} (leakage into the benchmark)")
    return problems


def _capped(batch: BatchArrays, pairs: list[tuple[int, object]], what: str) -> list[Problem]:
    """One problem per (image, what it matches) pair, the first MAX_LISTED, then a count."""
    listed = []
    for i, other in pairs[:MAX_LISTED]:
        file, index = batch.where(i)
        listed.append(Problem(file, what.format(other), index))
    if len(pairs) > MAX_LISTED:
        listed.append(Problem(".", f"... and {len(pairs) - MAX_LISTED} more like these"))
    return listed
