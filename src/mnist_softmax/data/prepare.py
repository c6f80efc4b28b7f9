"""Turn verified IDX files and accepted batches into the splits and scaler later stages read.

The training pool is MNIST's 60k training images followed by the training part of every
accepted batch, in manifest order. The validation split is a stratified, seeded sample of the
pool (sklearn's ``train_test_split``), so each class keeps its share and the same seed and
batches give the same split on any machine. The MNIST test split is passed through untouched:
it stays the benchmark every model is compared on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnist_softmax.config import DataConfig
from mnist_softmax.data.idx import check_images_labels, read_idx
from mnist_softmax.data.scaler import Scaler, load_scaler, scaler_path
from mnist_softmax.data.splits import SPLITS, Split, concat_splits, load_split, split_path
from mnist_softmax.errors import DataError
from mnist_softmax.inbox.batch_store import AcceptedBatch

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class PreparedData:
    """The splits every stage after preprocess reads, and the scaler fitted on ``train``."""

    train: Split
    val: Split
    test: Split
    scaler: Scaler

    @property
    def nbytes(self) -> int:
        """Bytes of array data: what shipping this to another process or machine costs."""
        splits = (self.train, self.val, self.test)
        arrays = [*(s.X for s in splits), *(s.y for s in splits)]
        return sum(a.nbytes for a in [*arrays, self.scaler.mean, self.scaler.scale])


def load_prepared(prepared_dir: str | Path) -> PreparedData:
    """Read back what the preprocess stage wrote into ``prepared_dir``."""
    train, val, test = (load_split(split_path(prepared_dir, s)) for s in SPLITS)
    return PreparedData(train, val, test, load_scaler(scaler_path(prepared_dir)))


def load_raw(raw_dir: str | Path, data: DataConfig, part: str) -> Split:
    """Read and cross-check the images and labels of ``part`` ("train" or "test")."""
    files = data.files
    images_name = getattr(files, f"{part}_images").name.removesuffix(".gz")
    labels_name = getattr(files, f"{part}_labels").name.removesuffix(".gz")
    images = read_idx(Path(raw_dir) / images_name)
    labels = read_idx(Path(raw_dir) / labels_name)
    check_images_labels(images, labels, len(data.class_names), tuple(data.image_shape), part)
    return Split(X=images.reshape(len(images), -1), y=labels.astype(np.int64))


def split_train_val(full: Split, val_size: int, seed: int) -> tuple[Split, Split]:
    """Hold out ``val_size`` images, stratified by class, reproducibly from ``seed``."""
    if not 0 < val_size < len(full):
        raise DataError(f"data.val_size={val_size} must be between 1 and {len(full) - 1}")
    counts = np.bincount(full.y)
    if counts[counts > 0].min() < 2:
        raise DataError("every class needs at least 2 training images for a stratified split")
    # imported here: ingest reads raw files through this module without splitting (~1 s)
    from sklearn.model_selection import train_test_split

    idx_train, idx_val = train_test_split(
        np.arange(len(full)), test_size=val_size, random_state=seed, stratify=full.y
    )
    # Sorted indices keep the stored arrays in file order: diffable and cache-friendly.
    idx_train, idx_val = np.sort(idx_train), np.sort(idx_val)
    return Split(full.X[idx_train], full.y[idx_train]), Split(full.X[idx_val], full.y[idx_val])


def training_pool(mnist_train: Split, batches: list[AcceptedBatch]) -> Split:
    """MNIST's training images, then each batch's training part (its held-out slice stays out)."""
    if not batches:
        return mnist_train
    return concat_splits([mnist_train, *(batch.training_part() for batch in batches)])


def prepare(
    raw_dir: str | Path, data: DataConfig, batches: list[AcceptedBatch] | None = None
) -> PreparedData:
    """Build the train/validation/test splits and fit the scaler on the train split only."""
    pool = training_pool(load_raw(raw_dir, data, "train"), batches or [])
    train, val = split_train_val(pool, data.val_size, data.split_seed)
    test = load_raw(raw_dir, data, "test")
    deskew_shape = (data.image_shape[0], data.image_shape[1]) if data.deskew else None
    scaler = Scaler.fit(train.X, data.scaling, data.std_floor, deskew_shape)
    return PreparedData(train, val, test, scaler)


def class_counts(prepared: PreparedData, class_names: list[str]) -> pd.DataFrame:
    """Return a (class x split) table of image counts, the data report's content."""
    import pandas as pd  # here: ingest reads raw files through this module without it

    splits = {"train": prepared.train, "val": prepared.val, "test": prepared.test}
    table = {
        name: np.bincount(split.y, minlength=len(class_names)) for name, split in splits.items()
    }
    return pd.DataFrame(table, index=pd.Index(class_names, name="class"))


def data_report(
    prepared: PreparedData, class_names: list[str], batches: list[AcceptedBatch] | None = None
) -> dict[str, object]:
    """Return the JSON data report: sizes and class counts per split, images per batch."""
    counts = class_counts(prepared, class_names)
    return {
        "size": {split: int(counts[split].sum()) for split in counts.columns},
        "counts": {split: counts[split].astype(int).to_dict() for split in counts.columns},
        "batches": {
            b.name: {"pool": int((~b.held_out).sum()), "held_out": int(b.held_out.sum())}
            for b in batches or []
        },
    }
