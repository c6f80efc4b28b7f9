"""The inbox under every fault the issue lists, with real MNIST images and real files.

Batches are written by ``make-batch``'s library (the same code a demo uses), corrupted the way
it corrupts them, and ingested by the real ``ingest``: accepted whole, or quarantined whole with
every problem named. Crash and disk faults run in a child process under a real SIGKILL or a
real RLIMIT_FSIZE.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import limited_python
from shipped import shipped_config

from mnist_softmax.data.prepare import prepare
from mnist_softmax.errors import DataError
from mnist_softmax.inbox.batch_maker import BatchSpec, draw_batch, load_source, write_batch
from mnist_softmax.inbox.batch_store import load_batch, load_manifest
from mnist_softmax.inbox.ingest import ingest


@pytest.fixture(scope="module")
def mnist(mnist_raw):
    """Real MNIST train and test images and labels, as arrays."""
    return {part: load_source(mnist_raw, part) for part in ("train", "test")}


@pytest.fixture
def cfg(tmp_path):
    """The shipped config with the inbox, quarantine and store in this test's folder."""
    base = shipped_config()
    folders = {key: str(tmp_path / key) for key in ("incoming_dir", "quarantine_dir")}
    folders |= {
        "batches_dir": str(tmp_path / "batches"),
        "batch_manifest": str(tmp_path / "b.yaml"),
    }
    return replace(base, paths=replace(base.paths, **folders))


def drop(cfg, mnist, name: str, **spec) -> Path:
    """Write a batch of real training images into the inbox, as a producer would."""
    images, labels = mnist["train"]
    batch = BatchSpec(name=name, **{"count": 200, "seed": sum(map(ord, name)), **spec})
    drawn = draw_batch(images, labels, batch)
    inbox = Path(cfg.paths.incoming_dir)
    inbox.mkdir(parents=True, exist_ok=True)
    return write_batch(*drawn, inbox, batch, test_images=mnist["test"][0])


def run_ingest(cfg, mnist):
    return ingest(cfg, mnist["test"][0].reshape(10000, -1))


def stored(cfg) -> list[str]:
    return sorted(p.name for p in Path(cfg.paths.batches_dir).iterdir())


def test_valid_batches_are_accepted_whole_with_their_hashes(cfg, mnist):
    drop(cfg, mnist, "clinic-a", fmt="idx", shift_px=2)
    drop(cfg, mnist, "clinic-b", fmt="png", rotate_deg=10)
    result = run_ingest(cfg, mnist)
    assert result.accepted == ["clinic-a", "clinic-b"] and not result.quarantined
    assert list(Path(cfg.paths.incoming_dir).iterdir()) == []  # the inbox is emptied
    assert stored(cfg) == ["README.txt", "clinic-a.npz", "clinic-b.npz"]
    for entry in load_manifest(cfg.paths.batch_manifest):
        batch = load_batch(cfg.paths.batches_dir, entry)
        assert entry.pixels_sha256 == hashlib.sha256(batch.X.tobytes()).hexdigest()
        assert entry.images == 200 and entry.holdout == batch.held_out.sum() == 40
        assert sum(entry.label_counts.values()) == 200
        counts = np.bincount(batch.y, minlength=10)
        assert [entry.label_counts[str(c)] for c in range(10)] == counts.tolist()
        held = np.bincount(batch.y[batch.held_out], minlength=10)
        assert np.all(np.abs(held - counts * 0.2) <= 1)  # stratified per class


CORRUPTIONS = {  # make-batch's corruption -> (form, words REASON.txt must hold)
    "wrong-magic": ("idx", "wrong IDX magic"),
    "wrong-shape": ("idx", "expected (n, *(28, 28))"),
    "labels-out-of-range": ("idx", "label out of range"),
    "count-mismatch": ("idx", "200 images but 199 labels"),
    "truncated-gzip": ("idx", "truncated"),
    "bad-png": ("png", "not a readable image"),
    "duplicate-images": ("png", "- 00001.png: duplicates 00000.png\n"),
    "test-leak": ("idx", "- images-idx3-ubyte[0]: identical to test image"),
    "empty": ("idx", "empty batch"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_bad_batch_is_quarantined_whole_with_its_reason(cfg, mnist, corruption):
    fmt, words = CORRUPTIONS[corruption]
    drop(cfg, mnist, "good", fmt="idx")
    folder = drop(cfg, mnist, "bad", fmt=fmt, corrupt=corruption)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = run_ingest(cfg, mnist)
    assert result.accepted == ["good"] and list(result.quarantined) == ["bad"]
    moved = Path(cfg.paths.quarantine_dir) / "bad"
    reason = (moved / "REASON.txt").read_text()
    assert words in reason, reason
    assert {p.name: p.read_bytes() for p in moved.iterdir() if p.name != "REASON.txt"} == files
    assert [e.name for e in load_manifest(cfg.paths.batch_manifest)] == ["good"]
    assert stored(cfg) == ["README.txt", "good.npz"]  # nothing of "bad" merged


def test_every_problem_of_a_batch_is_named_with_file_and_index(cfg, mnist):
    folder = drop(cfg, mnist, "messy", fmt="png", corrupt="bad-png")
    csv = folder / "labels.csv"
    rows = csv.read_text().splitlines()
    rows[5] = rows[5].split(",")[0] + ",eleven"
    csv.write_text("\n".join(rows) + "\n")
    run_ingest(cfg, mnist)
    reason = (Path(cfg.paths.quarantine_dir) / "messy" / "REASON.txt").read_text()
    moved = Path(cfg.paths.quarantine_dir) / "messy"
    bad_png = [p.name for p in moved.glob("*.png") if not p.read_bytes().startswith(b"\x89PNG")]
    assert len(bad_png) == 1
    assert f"- {bad_png[0]}: not a readable image" in reason
    assert "- labels.csv[4]: label 'eleven' is not a class" in reason
    assert "2 problem(s)" in reason


def test_size_limits_and_names_are_checked(cfg, mnist):
    small = replace(cfg, data=replace(cfg.data, inbox=replace(cfg.data.inbox, max_images=100)))
    drop(small, mnist, "too-big", count=150)
    drop(small, mnist, "too-small", count=20)
    result = run_ingest(small, mnist)
    too_big = result.quarantined["too-big"]
    assert "declares 150 records, more than data.inbox.max_images (100)" in too_big[0]
    assert "20 images, fewer than data.inbox.min_images" in result.quarantined["too-small"][0]


def test_a_second_batch_with_an_accepted_name_is_quarantined(cfg, mnist):
    drop(cfg, mnist, "week-1")
    run_ingest(cfg, mnist)
    before = Path(cfg.paths.batches_dir, "week-1.npz").read_bytes()
    for round_ in range(2):
        drop(cfg, mnist, "week-1", seed=100 + round_)  # other images, same name
        result = run_ingest(cfg, mnist)
        assert "was accepted on" in result.quarantined["week-1"][0]
    assert Path(cfg.paths.batches_dir, "week-1.npz").read_bytes() == before
    assert sorted(p.name for p in Path(cfg.paths.quarantine_dir).iterdir()) == [
        "week-1",
        "week-1.1",
    ]


def test_a_batch_still_being_written_is_left_alone_until_ready(cfg, mnist):
    folder = drop(cfg, mnist, "copying")
    (folder / "READY").unlink()  # the producer has not finished
    result = run_ingest(cfg, mnist)
    assert result.waiting == ["copying"] and not result.accepted and not result.quarantined
    assert folder.is_dir() and load_manifest(cfg.paths.batch_manifest) == []
    (folder / "READY").touch()
    assert run_ingest(cfg, mnist).accepted == ["copying"]


def test_an_interrupted_ingest_is_finished_by_the_next_run(cfg, mnist):
    """The states a kill can leave between the steps of an acceptance, each one recovered."""
    drop(cfg, mnist, "a")
    run_ingest(cfg, mnist)
    # killed after the .npz, before the manifest: an unlisted file, the batch still in the inbox
    Path(cfg.paths.batches_dir, "b.npz").write_bytes(b"half")
    drop(cfg, mnist, "b")
    # killed after the manifest, before the inbox was cleared: "a" again, same content
    drop(cfg, mnist, "a")
    Path(cfg.paths.incoming_dir, ".done-c").mkdir()  # killed while deleting an inbox folder
    result = run_ingest(cfg, mnist)
    assert result.accepted == ["b"] and not result.quarantined
    assert [e.name for e in load_manifest(cfg.paths.batch_manifest)] == ["a", "b"]
    assert list(Path(cfg.paths.incoming_dir).iterdir()) == []
    load_batch(cfg.paths.batches_dir, load_manifest(cfg.paths.batch_manifest)[1])  # hashes ok


INGEST_CODE = """
import numpy as np
from dataclasses import replace
from mnist_softmax.config import compose, config_from_container
from mnist_softmax.data.idx import read_idx
from mnist_softmax.inbox.ingest import ingest
base = config_from_container(compose({params!r}))
cfg = replace(base, paths=replace(base.paths, **{folders!r}))
ingest(cfg, np.load({test!r}))
"""


def ingest_in_child(cfg, tmp_path, mnist) -> str:
    test = tmp_path / "test.npy"
    np.save(test, mnist["test"][0].reshape(10000, -1))
    keys = ("incoming_dir", "quarantine_dir", "batches_dir", "batch_manifest")
    folders = {key: getattr(cfg.paths, key) for key in keys}
    params = str(Path(__file__).resolve().parents[1] / "params")
    return INGEST_CODE.format(params=params, folders=folders, test=str(test))


def test_sigkill_during_ingest_leaves_nothing_half_merged(cfg, mnist, tmp_path):
    drop(cfg, mnist, "big", count=20000, fmt="idx")
    code = ingest_in_child(cfg, tmp_path, mnist)
    child = subprocess.Popen([sys.executable, "-c", code])
    store, deadline = Path(cfg.paths.batches_dir), time.monotonic() + 120
    while not (store.is_dir() and any(p.name.startswith(".big.npz") for p in store.iterdir())):
        assert child.poll() is None and time.monotonic() < deadline, "never saw the write"
        time.sleep(0.0005)
    child.send_signal(signal.SIGKILL)  # while the 15 MB .npz is being written
    child.wait(timeout=30)
    names = [e.name for e in load_manifest(cfg.paths.batch_manifest)]
    assert names in ([], ["big"])  # all or nothing, never a partial entry
    for entry in load_manifest(cfg.paths.batch_manifest):
        load_batch(cfg.paths.batches_dir, entry)
    result = run_ingest(cfg, mnist)  # the next run works, and finishes the job
    assert not result.quarantined
    assert [e.name for e in load_manifest(cfg.paths.batch_manifest)] == ["big"]
    assert stored(cfg) == ["README.txt", "big.npz"] and not list(
        Path(cfg.paths.incoming_dir).iterdir()
    )


def test_disk_full_while_storing_keeps_the_batch_in_the_inbox(cfg, mnist, tmp_path):
    folder = drop(cfg, mnist, "wont-fit", count=2000)
    run_ingest(replace(cfg, paths=replace(cfg.paths, incoming_dir=str(tmp_path / "empty"))), mnist)
    files = sorted(p.name for p in folder.iterdir())
    proc = limited_python(ingest_in_child(cfg, tmp_path, mnist), fsize=400_000)  # npz: 1.6 MB
    assert proc.returncode == 1, proc.stderr
    assert "StorageError: cannot write" in proc.stderr and "File too large" in proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == files  # still there, not quarantined
    assert not Path(cfg.paths.quarantine_dir).exists()
    assert load_manifest(cfg.paths.batch_manifest) == [] and stored(cfg) == ["README.txt"]


def test_an_accepted_batch_that_changed_is_refused(cfg, mnist):
    drop(cfg, mnist, "pinned")
    run_ingest(cfg, mnist)
    entry = load_manifest(cfg.paths.batch_manifest)[0]
    assert entry.labels_sha256 != replace(entry, labels_sha256="0" * 64).labels_sha256
    with pytest.raises(DataError, match="does not match its manifest hashes"):
        load_batch(cfg.paths.batches_dir, replace(entry, labels_sha256="0" * 64))


def test_the_training_pool_holds_each_batch_but_not_its_held_out_slice(cfg, mnist, mnist_raw):
    drop(cfg, mnist, "extra", count=500, rotate_deg=15)
    run_ingest(cfg, mnist)
    batch = load_batch(cfg.paths.batches_dir, load_manifest(cfg.paths.batch_manifest)[0])
    plain = prepare(mnist_raw, cfg.data)
    pooled = prepare(mnist_raw, cfg.data, [batch])
    assert len(pooled.train) + len(pooled.val) == 60000 + 400
    assert np.array_equal(pooled.test.X, plain.test.X)  # the benchmark does not move
    rows = {row.tobytes() for row in np.concatenate([pooled.train.X, pooled.val.X])}
    assert all(row.tobytes() in rows for row in batch.X[~batch.held_out])
    assert not any(row.tobytes() in rows for row in batch.X[batch.held_out])
