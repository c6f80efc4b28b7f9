"""Accepted batches: one immutable ``.npz`` each, listed with their hashes in a committed manifest.

The manifest (``data/batches.yaml``, in git) says which batches a model was trained on and
pins their content: ``load_batch`` refuses a file whose pixels or labels no longer hash to the
manifest's values, so an accepted batch cannot change silently after the fact. The ``.npz``
files themselves are DVC-tracked (the ingest stage's output).

Each batch keeps a seeded, stratified share of its images out of training (``holdout``): the
batch's own test slice, on which the retrain job compares champion and challenger. Scoring the
challenger on images it trained on would make "not worse on the new data" always true.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from mnist_softmax.atomic import atomic_open, load_stage_npz, save_npz
from mnist_softmax.data.splits import Split
from mnist_softmax.errors import DataError

MANIFEST_HEADER = (
    "# Accepted batches of new labelled data, appended by the ingest stage: do not edit by hand.\n"
    "# sha256 of the pixels (n x 784 uint8, C order) and labels (uint8); see docs/retraining.md.\n"
)


@dataclass(frozen=True)
class BatchEntry:
    """One accepted batch as the manifest records it."""

    name: str
    images: int
    holdout: int
    pixels_sha256: str
    labels_sha256: str
    label_counts: dict[str, int]
    accepted: str
    form: str


@dataclass(frozen=True)
class AcceptedBatch:
    """An accepted batch's arrays: pixels (n, 784) uint8, labels (n,), held-out mask (n,)."""

    name: str
    X: np.ndarray
    y: np.ndarray
    held_out: np.ndarray

    def training_part(self) -> Split:
        return Split(self.X[~self.held_out], self.y[~self.held_out])

    def held_out_part(self) -> Split:
        return Split(self.X[self.held_out], self.y[self.held_out])


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def as_stored(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (n, height * width) and labels, both uint8: the arrays the manifest hashes."""
    X = np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.uint8)
    return X, labels.astype(np.uint8)


def same_content(entry: BatchEntry, images: np.ndarray, labels: np.ndarray) -> bool:
    """Whether ``images`` and ``labels`` are exactly the batch the manifest ``entry`` pins."""
    X, y = as_stored(images, labels)
    return (digest(X), digest(y)) == (entry.pixels_sha256, entry.labels_sha256)


def load_manifest(path: str | Path) -> list[BatchEntry]:
    """The accepted batches in order of acceptance; none when the manifest does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return [BatchEntry(**entry) for entry in raw.get("batches") or []]
    except (yaml.YAMLError, TypeError, AttributeError) as exc:
        raise DataError(f"{path} is not a batch manifest ({exc}): restore it from git") from None


def save_manifest(path: str | Path, entries: list[BatchEntry]) -> None:
    body = yaml.safe_dump({"batches": [asdict(e) for e in entries]}, sort_keys=False)
    with atomic_open(path) as handle:
        handle.write(MANIFEST_HEADER + body)


def manifest_sha256(path: str | Path) -> str:
    """The manifest file's hash: names the exact set of batches a run was trained on."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def batch_path(batches_dir: str | Path, name: str) -> Path:
    return Path(batches_dir) / f"{name}.npz"


def held_out_mask(y: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A seeded mask of ``share`` of the images, stratified when every class allows it."""
    n_held = max(1, round(share * len(y)))
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and n_held >= len(counts[counts > 0]) else None
    # imported here: the stages that only read batches (evaluate, log) need not pay ~1 s for it
    from sklearn.model_selection import train_test_split

    _, held = train_test_split(
        np.arange(len(y)), test_size=n_held, random_state=seed, stratify=stratify
    )
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    return mask


def store_batch(batches_dir: str | Path, name: str, X: np.ndarray, y: np.ndarray, share: float):
    """Write an accepted batch's ``.npz`` (atomically) and return its manifest fields."""
    X, y = as_stored(X, y)
    pixels = digest(X)
    mask = held_out_mask(y, share, seed=int(pixels[:8], 16))  # the batch's own, fixed forever
    save_npz(batch_path(batches_dir, name), X=X, y=y, held_out=mask)
    return {"images": len(y), "holdout": int(mask.sum()), "pixels_sha256": pixels,
            "labels_sha256": digest(y)}  # fmt: skip


def load_batch(batches_dir: str | Path, entry: BatchEntry) -> AcceptedBatch:
    """Load an accepted batch and check it still is what the manifest says it is."""
    path = batch_path(batches_dir, entry.name)
    arrays = load_stage_npz(path, ("X", "y", "held_out"), "ingest")
    X, y = arrays["X"], arrays["y"]
    if not same_content(entry, X, y):
        raise DataError(
            f"{path} does not match its manifest hashes: an accepted batch was modified; "
            "restore it with `dvc checkout`"
        )
    return AcceptedBatch(entry.name, X, y.astype(np.int64), arrays["held_out"].astype(bool))


def load_batches(batches_dir: str | Path, manifest: str | Path) -> list[AcceptedBatch]:
    return [load_batch(batches_dir, entry) for entry in load_manifest(manifest)]
