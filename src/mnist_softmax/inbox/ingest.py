"""The inbox walk: accept each complete, valid batch whole, or quarantine it whole with reasons.

Protocol (docs/retraining.md): a batch is ``<incoming>/<name>/``, complete once it holds a
``READY`` file, which the producer writes last; folders without it (still being copied) and
hidden ones are left alone for a later run. So a job starting mid-copy never reads half a batch.

Crash safety, step by step, for a batch that passes:
1. its ``.npz`` is written beside the others (atomic rename);
2. the manifest is rewritten with the new entry (atomic rename): the commit point;
3. the inbox folder is renamed to a hidden name, then deleted.
A kill between 1 and 2 leaves an ``.npz`` the manifest does not list: removed at the next start,
and the batch, still in the inbox, is ingested again. A kill between 2 and 3 leaves an accepted
batch in the inbox: the next run sees the same name with the same hashes and only removes it.
A disk error (full, read-only) stops the run without touching the batch: it is not the
batch's fault, so it is not quarantined.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_softmax.atomic import atomic_open
from mnist_softmax.config import Config, InboxConfig
from mnist_softmax.errors import StorageError, storage_error
from mnist_softmax.inbox.batch_checks import TestIndex, check_content, check_name
from mnist_softmax.inbox.batch_files import READY, BatchProblems, Problem, inbox_folders, read_batch
from mnist_softmax.inbox.batch_store import (
    BatchEntry,
    batch_path,
    load_manifest,
    same_content,
    save_manifest,
    store_batch,
)

log = logging.getLogger(__name__)

REASON = "REASON.txt"
# kept in the accepted-batches folder so it is never empty (DVC warns about empty outputs)
FOLDER_NOTE = "README.txt"
NOTE_TEXT = "Accepted batches, one .npz each, listed in ../batches.yaml: written by ingest only.\n"
DONE_PREFIX = ".done-"  # an accepted batch's inbox folder, renamed before it is deleted


@dataclass
class IngestResult:
    """What one run did with the inbox: accepted, quarantined (name -> reasons), left waiting."""

    accepted: list[str] = field(default_factory=list)
    quarantined: dict[str, list[str]] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)


def ingest(cfg: Config, test_images: np.ndarray) -> IngestResult:
    """Process every complete batch in the inbox, oldest name first; see the module docstring."""
    paths = cfg.paths
    incoming, batches_dir = Path(paths.incoming_dir), Path(paths.batches_dir)
    batches_dir.mkdir(parents=True, exist_ok=True)
    incoming.mkdir(parents=True, exist_ok=True)
    if not (batches_dir / FOLDER_NOTE).is_file():
        with atomic_open(batches_dir / FOLDER_NOTE) as handle:
            handle.write(NOTE_TEXT)
    entries = load_manifest(paths.batch_manifest)
    if not Path(paths.batch_manifest).exists():
        save_manifest(paths.batch_manifest, entries)
    _remove_leftovers(incoming, batches_dir, entries)
    inbox = cfg.data.inbox  # the limits every batch is held to, read once
    test_index, result = TestIndex(test_images), IngestResult()
    ready, waiting = inbox_folders(incoming)
    for folder in waiting:
        log.info("%s: no %s file yet (still being written?): left for a later run",
                 folder.name, READY)  # fmt: skip
        result.waiting.append(folder.name)
    for folder in ready:
        _ingest_one(folder, cfg, inbox, test_index, entries, result)
    return result


def _ingest_one(
    folder: Path,
    cfg: Config,
    inbox: InboxConfig,
    test_index: TestIndex,
    entries: list[BatchEntry],
    result: IngestResult,
) -> None:
    data, name = cfg.data, folder.name
    problems = check_name(name)
    try:
        batch = read_batch(folder, list(data.class_names), tuple(data.image_shape),
                           inbox.max_images)  # fmt: skip
    except BatchProblems as exc:
        batch, problems = None, problems + exc.problems
    if batch is not None:
        problems += check_content(batch, inbox, test_index)
    known = next((e for e in entries if e.name == name), None)
    if (
        known is not None
        and batch is not None
        and not problems
        and same_content(known, batch.images, batch.labels)
    ):
        log.info("%s: accepted by an earlier, interrupted run: clearing it from the inbox", name)
        _discard(folder)
        return
    if known is not None:
        problems.append(Problem(".", f"a batch named {name!r} was accepted on {known.accepted}: "
                                     "rename the new one"))  # fmt: skip
    if problems:
        result.quarantined[name] = [str(p) for p in problems]
        _quarantine(folder, Path(cfg.paths.quarantine_dir), problems)
        return
    paths = cfg.paths
    fields = store_batch(paths.batches_dir, name, batch.images, batch.labels, inbox.holdout)
    counts = np.bincount(batch.labels, minlength=len(data.class_names)).tolist()
    entry = BatchEntry(name=name, **fields, form=batch.form,
                       label_counts=dict(zip(data.class_names, counts, strict=True)),
                       accepted=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))  # fmt: skip
    try:
        save_manifest(paths.batch_manifest, [*entries, entry])
    except StorageError:
        batch_path(paths.batches_dir, name).unlink(missing_ok=True)
        raise
    entries.append(entry)
    result.accepted.append(name)
    log.info("%s: accepted, %d images (%d held out), labels per class %s", name, entry.images,
             entry.holdout, counts)  # fmt: skip
    _discard(folder)


def _quarantine(folder: Path, quarantine_dir: Path, problems: list[Problem]) -> None:
    """Move the batch whole to the quarantine, with REASON.txt naming every problem."""
    text = f"{folder.name}: rejected by ingest, {len(problems)} problem(s):\n"
    text += "".join(f"- {p}\n" for p in problems)
    try:
        with atomic_open(folder / REASON) as handle:  # written first: the move carries it
            handle.write(text)
        quarantine_dir.mkdir(parents=True, exist_ok=True)
        target, k = quarantine_dir / folder.name, 1
        while target.exists():  # a batch quarantined before under the same name stays too
            target, k = quarantine_dir / f"{folder.name}.{k}", k + 1
        shutil.move(folder, target)
    except OSError as exc:
        raise storage_error(quarantine_dir, exc) from None
    log.warning("%s: quarantined to %s: %s", folder.name, target, "; ".join(map(str, problems)))


def _discard(folder: Path) -> None:
    """Remove an accepted batch from the inbox: hide it first (atomic), then delete."""
    hidden = folder.with_name(f"{DONE_PREFIX}{folder.name}")
    folder.replace(hidden)
    shutil.rmtree(hidden)


def _remove_leftovers(incoming: Path, batches_dir: Path, entries: list[BatchEntry]) -> None:
    """Undo what a killed run left: unlisted ``.npz`` files, half-deleted inbox folders."""
    listed = {batch_path(batches_dir, e.name).name for e in entries} | {FOLDER_NOTE}
    for path in batches_dir.iterdir():
        if path.name not in listed:
            log.warning("%s: not in the manifest (an interrupted ingest): removed", path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in incoming.glob(f"{DONE_PREFIX}*"):
        shutil.rmtree(path)
