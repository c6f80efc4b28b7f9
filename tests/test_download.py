"""The real downloader against real mirrors on loopback: file://, HTTP, and broken ones."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import REPO, limited_python, read_only, serve, stage_env
from shipped import shipped_config

from mnist_softmax.data.download import (
    MB,
    RemoteFile,
    RetryPolicy,
    fetch_file,
    mirrors_with_override,
    needs_download,
    policy_of,
)
from mnist_softmax.errors import DataError, StorageError

LABELS = RemoteFile(
    "train-labels-idx1-ubyte.gz", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
)
SHIPPED = policy_of(shipped_config().data)  # params/data/: the only source of the values
FAST = replace(SHIPPED, timeout_s=2.0, retries=2, backoff_s=0.0)


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


def test_checksum_mismatch_on_every_mirror(mnist_raw, tmp_path):
    raw = bytearray((mnist_raw / LABELS.name.removesuffix(".gz")).read_bytes())
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
        policy = replace(SHIPPED, timeout_s=0.5, retries=2, backoff_s=0.01)
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


# --- faults provoked for real: loopback servers that misbehave, a full disk, a locked folder ---

IMAGES = RemoteFile(
    "t10k-images-idx3-ubyte.gz", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
)


class _Counting(http.server.SimpleHTTPRequestHandler):
    """Base of the misbehaving mirrors: counts requests; ``body`` is the real .gz file."""

    protocol_version = "HTTP/1.1"  # chunked transfer encoding, as real mirrors use
    body = b""
    requests: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        self.answer()

    def chunked_headers(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _serve(tmp_path: Path, shared_mnist: Path, answer, remote: RemoteFile = LABELS):
    handler = type("Handler", (_Counting,), {"answer": answer, "requests": []})
    handler.body = (shared_mnist / remote.name).read_bytes()
    url, server = serve(tmp_path, handler)
    return url, server, handler


@pytest.fixture
def mirror_that(tmp_path, shared_mnist):
    """Start a loopback mirror answering with the given method; yields (url, handler class)."""
    servers = []

    def start(answer, remote: RemoteFile = LABELS):
        url, server, handler = _serve(tmp_path, shared_mnist, answer, remote)
        servers.append(server)
        return url, handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _cut_chunked(self) -> None:
    """Defect 1: chunked body, connection closed half-way (http.client.IncompleteRead)."""
    self.chunked_headers()
    self.chunk(self.body[: len(self.body) // 2])
    self.close_connection = True  # no final zero-length chunk: the body is cut off


def test_chunked_body_cut_midway_is_retried_then_next_mirror(mirror_that, file_mirror, tmp_path):
    url, handler = mirror_that(_cut_chunked)
    sleeps: list[float] = []
    out = tmp_path / "raw"
    path = fetch_file(LABELS, [url, file_mirror], out, FAST, sleeps.append)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == LABELS.sha256
    assert len(handler.requests) == FAST.retries and sleeps == [0.0]  # transient: retried
    assert sorted(p.name for p in out.iterdir()) == [LABELS.local_name]


def test_chunked_body_cut_everywhere_fails_with_one_reason_per_attempt(mirror_that, tmp_path):
    url, _ = mirror_that(_cut_chunked)
    with pytest.raises(DataError, match="IncompleteRead") as info:
        fetch_file(LABELS, [url], tmp_path / "raw", FAST, no_sleep)
    assert str(info.value).count(": IncompleteRead after") == FAST.retries
    assert_no_partial_files(tmp_path / "raw")


def _endless(self) -> None:
    """Defect 2: an answer that never ends (it would fill the disk)."""
    self.chunked_headers()
    block = b"\x1f\x8b" + bytes(1 << 16)
    with contextlib.suppress(OSError):
        while True:
            self.chunk(block)


def test_endless_answer_is_cut_at_the_byte_cap(mirror_that, tmp_path):
    url, handler = mirror_that(_endless)
    policy = RetryPolicy(timeout_s=5, retries=3, backoff_s=0, max_bytes=2 * MB, attempt_s=60)
    started = time.monotonic()
    with pytest.raises(DataError, match=r"sent more than 2\.0 MB: cut off"):
        fetch_file(LABELS, [url], tmp_path / "raw", policy, no_sleep)
    assert time.monotonic() - started < 10
    assert len(handler.requests) == 1  # an oversized answer will be oversized again
    assert_no_partial_files(tmp_path / "raw")


def _announces_too_much(self) -> None:
    self.send_response(200)
    self.send_header("Content-Length", str(10**10))
    self.end_headers()
    with contextlib.suppress(OSError):
        self.wfile.write(self.body)


def test_announced_size_over_the_cap_is_refused_before_reading(mirror_that, tmp_path):
    url, _ = mirror_that(_announces_too_much)
    with pytest.raises(DataError, match=r"announces 10000\.0 MB"):
        fetch_file(LABELS, [url], tmp_path / "raw", FAST, no_sleep)
    assert_no_partial_files(tmp_path / "raw")


def _drip(self) -> None:
    """Defect 2: one byte every 50 ms forever: no read ever times out."""
    self.chunked_headers()
    with contextlib.suppress(OSError):
        for byte in self.body:
            self.chunk(bytes([byte]))
            time.sleep(0.05)


def test_stalling_mirror_is_cut_at_the_attempt_time_limit(mirror_that, file_mirror, tmp_path):
    url, handler = mirror_that(_drip)
    policy = replace(SHIPPED, timeout_s=2, retries=2, backoff_s=0, attempt_s=1.0)
    started = time.monotonic()
    path = fetch_file(LABELS, [url, file_mirror], tmp_path / "raw", policy, no_sleep)
    assert path.is_file()
    assert len(handler.requests) == 2  # a stall may pass: retried, then the next mirror
    assert time.monotonic() - started < 2 * 1.0 + 3  # two attempts of ~1 s, not forever


def _status(code: int):
    def answer(self) -> None:
        self.send_error(code)

    return answer


@pytest.mark.parametrize("code", [403, 404])
def test_client_errors_are_not_retried(mirror_that, file_mirror, tmp_path, code):
    url, handler = mirror_that(_status(code))
    sleeps: list[float] = []
    fetch_file(LABELS, [url, file_mirror], tmp_path / "raw", FAST, sleeps.append)
    assert len(handler.requests) == 1 and sleeps == []


def test_server_errors_are_retried(mirror_that, tmp_path):
    url, handler = mirror_that(_status(503))
    with pytest.raises(DataError, match="HTTP 503"):
        fetch_file(LABELS, [url], tmp_path / "raw", FAST, no_sleep)
    assert len(handler.requests) == FAST.retries


def _redirect_to(target: str):
    def answer(self) -> None:
        if self.path.startswith("/moved/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
            return
        self.send_response(302)
        port = self.server.server_address[1]
        self.send_header("Location", target.format(port=port, path=self.path))
        self.send_header("Content-Length", "0")
        self.end_headers()

    return answer


def test_redirect_within_the_mirror_host_is_followed(mirror_that, tmp_path):
    url, handler = mirror_that(_redirect_to("http://127.0.0.1:{port}/moved{path}"))
    path = fetch_file(LABELS, [url], tmp_path / "raw", FAST, no_sleep)
    assert path.is_file() and len(handler.requests) == 2


def test_redirect_to_another_host_is_refused(mirror_that, tmp_path):
    url, handler = mirror_that(_redirect_to("http://localhost:{port}/moved{path}"))
    with pytest.raises(DataError, match="another scheme or host, refused"):
        fetch_file(LABELS, [url], tmp_path / "raw", FAST, no_sleep)
    assert len(handler.requests) == 1  # never followed, never retried


def test_wrong_idx_magic_is_reported_as_such(tmp_path, mnist_raw):
    raw = bytearray((mnist_raw / LABELS.name.removesuffix(".gz")).read_bytes())
    raw[2] = 0x42  # a dtype code IDX does not have; the size is still right
    mirror = _mirror_with(tmp_path, gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="wrong IDX magic") as info:
        fetch_file(LABELS, [mirror], tmp_path / "raw", FAST)
    assert "bytes" not in str(info.value).split("wrong IDX magic")[1]  # not a size mismatch


def test_disk_full_is_one_line_naming_the_file_and_not_retried(file_mirror, tmp_path):
    """RLIMIT_FSIZE: the 7.8 MB decompressed test images do not fit in 1 MB."""
    out = tmp_path / "raw"
    proc = limited_python(
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from mnist_softmax.data.download import RemoteFile, RetryPolicy, fetch_file\n"
        f"fetch_file(RemoteFile({IMAGES.name!r}, {IMAGES.sha256!r}), [{file_mirror!r}], "
        f"{str(out)!r}, {replace(SHIPPED, retries=3, backoff_s=0)!r})\n",
        fsize=1_000_000,
    )
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"StorageError: cannot write {out / IMAGES.local_name}: File too large (EFBIG): "
        "the file size limit was reached; free space or raise the limit"
    )
    assert "attempt 2" not in proc.stderr  # a full disk is not a network error
    assert_no_partial_files(out)


def test_read_only_folder_is_one_line_naming_it_and_not_retried(file_mirror, tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    with read_only(out), pytest.raises(StorageError, match=rf"cannot write {out}: ") as info:
        fetch_file(LABELS, [file_mirror, file_mirror + "/"], out, FAST, no_sleep)
    assert "\n" not in str(info.value)
    assert_no_partial_files(out)


def test_sigterm_mid_download_leaves_no_temp_file(mirror_that, tmp_path, shared_mnist):
    """The fetch stage, killed while a stalling mirror drips: exit 143, nothing left behind."""
    url, _ = mirror_that(_drip)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy2(REPO / "params.yaml", work / "params.yaml")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "pipeline" / "fetch.py")],
        cwd=work,
        env=stage_env(url),
        stderr=subprocess.PIPE,
        text=True,
    )
    raw = work / "data" / "raw"
    deadline = time.monotonic() + 60
    while not (raw.is_dir() and any(raw.glob(".*.part"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(raw.glob(".*.part")), "the download never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("[fetch] error: terminated by SIGTERM")
    assert_no_partial_files(raw)
