"""The real downloader against real mirrors on loopback: file://, HTTP, and broken ones."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
from pathlib import Path

import pytest
from conftest import serve

from mnist_softmax.data.download import (
    RemoteFile,
    RetryPolicy,
    fetch_file,
    mirrors_with_override,
    needs_download,
)
from mnist_softmax.errors import DataError

LABELS = RemoteFile(
    "train-labels-idx1-ubyte.gz", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
)
FAST = RetryPolicy(timeout_s=2.0, retries=2, backoff_s=0.0)


def no_sleep(_: float) -> None:
    pass


def assert_no_partial_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir()] if folder.exists() else []
    assert leftovers == [], f"partial files left behind: {leftovers}"


def test_fetch_over_http(http_mirror, tmp_path):
    path = fetch_file(LABELS, [http_mirror], tmp_path, FAST)
    assert path.name == "train-labels-idx1-ubyte"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == LABELS.sha256


def test_fetch_over_file_url(file_mirror, tmp_path):
    path = fetch_file(LABELS, [file_mirror], tmp_path, FAST)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == LABELS.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_valid_file_is_not_downloaded_again(file_mirror, tmp_path):
    path = fetch_file(LABELS, [file_mirror], tmp_path, FAST)
    before = path.stat().st_mtime_ns
    fetch_file(LABELS, ["http://127.0.0.1:9/unreachable"], tmp_path, FAST, sleep=no_sleep)
    assert path.stat().st_mtime_ns == before


def test_wrong_local_file_is_replaced(file_mirror, tmp_path):
    target = tmp_path / LABELS.local_name
    target.write_bytes(b"stale")
    assert needs_download(target, LABELS.sha256)
    fetch_file(LABELS, [file_mirror], tmp_path, FAST)
    assert not needs_download(target, LABELS.sha256)


class _HtmlHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!DOCTYPE html><html><body>Access denied</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_html_page_then_good_mirror(file_mirror, tmp_path):
    url, server = serve(tmp_path, _HtmlHandler)
    try:
        out = tmp_path / "raw"
        path = fetch_file(LABELS, [url, file_mirror], out, FAST)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == LABELS.sha256
    finally:
        server.shutdown()


def test_html_page_on_every_mirror_fails_clearly(tmp_path):
    url, server = serve(tmp_path, _HtmlHandler)
    try:
        with pytest.raises(DataError, match="HTML page"):
            fetch_file(LABELS, [url], tmp_path / "raw", FAST)
        assert_no_partial_files(tmp_path / "raw")
    finally:
        server.shutdown()


def _mirror_with(tmp_path: Path, blob: bytes) -> str:
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / LABELS.name).write_bytes(blob)
    return folder.as_uri()


def test_truncated_gzip_fails_clearly(shared_mnist, tmp_path):
    blob = (shared_mnist / LABELS.name).read_bytes()
    mirror = _mirror_with(tmp_path, blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated"):
        fetch_file(LABELS, [mirror], tmp_path / "raw", FAST)
    assert_no_partial_files(tmp_path / "raw")


def test_checksum_mismatch_on_every_mirror(shared_mnist, tmp_path):
    raw = bytearray(gzip.decompress((shared_mnist / LABELS.name).read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10  # one label changed: still valid IDX, wrong checksum
    mirror = _mirror_with(tmp_path, gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="sha256") as info:
        fetch_file(LABELS, [mirror, mirror + "/"], tmp_path / "raw", FAST)
    assert "put the new checksum in params/data/" in str(info.value)
    assert_no_partial_files(tmp_path / "raw")


def test_failed_fetch_keeps_the_existing_file(shared_mnist, tmp_path):
    """A stale-but-present file is not deleted when no mirror gives a better one."""
    out = tmp_path / "raw"
    out.mkdir()
    (out / LABELS.local_name).write_bytes(b"old")
    with pytest.raises(DataError):
        fetch_file(LABELS, [(tmp_path / "empty").as_uri()], out, FAST)
    assert (out / LABELS.local_name).read_bytes() == b"old"
    assert sorted(p.name for p in out.iterdir()) == [LABELS.local_name]


def test_missing_file_is_not_retried_and_the_next_mirror_is_used(file_mirror, tmp_path):
    sleeps: list[float] = []
    path = fetch_file(
        LABELS,
        [(tmp_path / "nowhere").as_uri(), file_mirror],
        tmp_path / "raw",
        FAST,
        sleeps.append,
    )
    assert path.is_file()
    assert sleeps == []  # a missing file stays missing: no retry, no back-off


def test_timeout_then_next_mirror(file_mirror, tmp_path):
    """A mirror that accepts connections but never answers times out; the next one is used."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        policy = RetryPolicy(timeout_s=0.5, retries=2, backoff_s=0.01)
        sleeps: list[float] = []
        path = fetch_file(
            LABELS, [f"http://127.0.0.1:{port}", file_mirror], tmp_path, policy, sleeps.append
        )
        assert path.is_file()
        assert sleeps == [0.01]
    finally:
        silent.close()


def test_unreachable_everywhere_names_the_variable(tmp_path):
    with pytest.raises(DataError, match=r"\$DATA_MIRROR"):
        fetch_file(LABELS, ["http://127.0.0.1:9"], tmp_path, FAST, sleep=no_sleep)


def test_mirror_override_goes_first_without_duplicates():
    got = mirrors_with_override(["https://a", "https://b"], {"DATA_MIRROR": "file:///x, https://b"})
    assert got == ["file:///x", "https://b", "https://a"]
