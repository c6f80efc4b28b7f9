"""Fetch IDX files from a list of mirrors: verify, then move (after fatiando/pooch).

Each file is streamed in chunks to a temporary ``.part`` beside its target, within a byte cap
and a time limit per attempt; then decompressed chunk by chunk into a second temporary file
while its IDX header and the sha256 of its decompressed bytes (gzip bytes differ between
mirrors) are checked; only then is it moved into place with ``os.replace``. A corrupt,
endless or cut-off download never lands under the real name, and both temporary files go on
every exit path, SIGTERM included (the stage turns SIGTERM into an exception).

What is retried: only what can succeed later (5xx answers, timeouts, resets, a body cut off
mid-way). A 4xx answer, a missing file, bad bytes or an oversized answer move on to the next
mirror at once. A local write failure (disk full, read-only or forbidden folder) stops the
whole fetch: no mirror can fix it. Redirects are followed only within the mirror's own scheme
and host; a redirect elsewhere is refused like a bad answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from mnist_softmax.atomic import atomic_path
from mnist_softmax.config import DataConfig
from mnist_softmax.data.idx import CHUNK, gunzip_idx
from mnist_softmax.errors import DataError, StorageError, storage_error
from mnist_softmax.redact import redact_text

log = logging.getLogger(__name__)

MIRROR_ENV = "DATA_MIRROR"
MB = 1_000_000


class TransientError(Exception):
    """A failure that may not happen again: 5xx, timeout, reset, a body cut off mid-way."""


class RefusedError(Exception):
    """A failure that will happen again on this mirror: 4xx, missing file, bad redirect, too big."""


@dataclass(frozen=True)
class RemoteFile:
    """A file on the mirrors: its name there and the sha256 of its decompressed bytes."""

    name: str
    sha256: str

    @property
    def local_name(self) -> str:
        return self.name.removesuffix(".gz")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries, timeouts and caps of one file's download.

    ``max_bytes`` caps both the bytes read from a mirror and the decompressed file; an
    attempt that takes longer than ``attempt_s`` in total is cut off (a mirror that drips
    bytes forever never trips the per-read ``timeout_s``). No defaults: the values are
    ``params/data/``'s (:func:`policy_of`).
    """

    timeout_s: float
    retries: int
    backoff_s: float
    max_bytes: int
    attempt_s: float


def mirrors_with_override(mirrors: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
    """Put the mirrors named in ``$DATA_MIRROR`` (comma-separated) before the configured ones."""
    env = os.environ if env is None else env
    extra = [m.strip() for m in env.get(MIRROR_ENV, "").split(",") if m.strip()]
    return list(dict.fromkeys([*extra, *mirrors]))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def needs_download(target: Path, sha256: str) -> bool:
    """Decide from the disk state alone: absent or wrong -> download, present and valid -> skip."""
    return not (target.is_file() and sha256_file(target) == sha256.lower())


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only when it keeps the scheme and host of the request."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        old, new = urlsplit(req.full_url), urlsplit(newurl)
        if (old.scheme, old.hostname) != (new.scheme, new.hostname):
            raise RefusedError(
                f"redirected to {new.scheme}://{new.hostname}/...: another scheme or host, "
                "refused (list that mirror in data.mirrors if you trust it)"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameHostRedirects)


def _open(url: str, timeout_s: float):  # type: ignore[no-untyped-def]
    """Open ``url``, sorting failures into retried (transient) and not (refused)."""
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-softmax"})
    try:
        return _OPENER.open(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        exc.close()
        error = TransientError if exc.code >= 500 or exc.code in (408, 429) else RefusedError
        raise error(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, FileNotFoundError | IsADirectoryError | PermissionError):
            raise RefusedError(f"not found: {exc.reason}") from None
        raise TransientError(str(exc.reason)) from None
    except (http.client.HTTPException, OSError) as exc:  # e.g. RemoteDisconnected, TLS errors
        raise TransientError(f"{type(exc).__name__}: {exc}") from None


def _download(url: str, out: BinaryIO, policy: RetryPolicy) -> int:
    """Stream ``url`` into ``out`` in chunks within the policy's byte cap and time limit."""
    deadline = time.monotonic() + policy.attempt_s
    with _open(url, policy.timeout_s) as response:
        total = int(response.headers.get("Content-Length") or 0)
        if total > policy.max_bytes:
            raise RefusedError(f"announces {total / MB:.1f} MB, over data.max_file_mb")
        read = getattr(response, "read1", response.read)  # read1: return what has arrived
        done, next_report = 0, 0.25
        while True:
            try:
                chunk = read(CHUNK)
            except (http.client.HTTPException, OSError) as exc:  # no local I/O in read()
                raise TransientError(f"{type(exc).__name__} after {done} bytes: {exc}") from None
            if not chunk:
                return done
            done += len(chunk)
            if done > policy.max_bytes:
                raise RefusedError(f"sent more than {policy.max_bytes / MB:.1f} MB: cut off")
            if time.monotonic() > deadline:
                raise TransientError(f"not done after {policy.attempt_s:g} s: cut off")
            out.write(chunk)  # an OSError here is local: atomic_path names the file
            if total > CHUNK and done / total >= next_report:
                log.info("  %s: %.1f / %.1f MB", url.rsplit("/", 1)[-1], done / MB, total / MB)
                next_report += 0.25


@contextlib.contextmanager
def _scratch(target: Path) -> Iterator[Path]:
    """Yield a temporary ``.part`` path beside ``target``, removed on every exit path."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise storage_error(target.parent, exc) from None
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _fetch_verified(url: str, remote: RemoteFile, target: Path, policy: RetryPolicy) -> None:
    """Download to a temporary .gz beside ``target``; replace ``target`` only once verified.

    Inside :func:`atomic_path` every local write failure becomes a StorageError naming
    ``target``; the network side raises only TransientError or RefusedError.
    """
    with _scratch(target) as part, atomic_path(target) as staged:
        with part.open("wb") as out:
            _download(url, out, policy)
        with staged.open("wb") as out:
            _, got = gunzip_idx(part, out.write, policy.max_bytes, url)
        if got != remote.sha256.lower():
            raise DataError(
                f"{url}: sha256 of decompressed bytes is {got}, expected {remote.sha256}; "
                "if upstream changed on purpose, put the new checksum in params/data/"
            )


def fetch_file(
    remote: RemoteFile,
    mirrors: Sequence[str],
    dest_dir: str | Path,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Make ``dest_dir/<name without .gz>`` hold the verified file; return its path.

    Transient failures are retried with exponential back-off, then the next mirror is tried;
    refused answers and bad bytes (HTML page, truncation, checksum, IDX header) move on to the
    next mirror at once; a local write failure (:class:`StorageError`) stops everything.
    """
    target = Path(dest_dir) / remote.local_name
    if not needs_download(target, remote.sha256):
        log.info("%s: present and verified, skipped", target)
        return target
    failures: list[str] = []
    for base in mirrors:
        url = f"{base.rstrip('/')}/{remote.name}"
        shown = redact_text(url)
        for attempt in range(1, policy.retries + 1):
            try:
                log.info("%s: downloading from %s (attempt %d)", remote.name, shown, attempt)
                _fetch_verified(url, remote, target, policy)
                return target
            except StorageError:
                raise
            except DataError as exc:
                failures.append(redact_text(str(exc)))
                break
            except RefusedError as exc:
                failures.append(f"{shown}: {exc}")
                break
            except TransientError as exc:
                failures.append(f"{shown}: {exc}")
                if attempt < policy.retries:
                    sleep(policy.backoff_s * 2 ** (attempt - 1))
    raise DataError(
        f"{remote.name}: no mirror gave a valid file ({len(mirrors)} tried; set ${MIRROR_ENV} "
        f"to a reachable mirror):\n  " + "\n  ".join(failures)
    )


DATA_FILES = ("train_images", "train_labels", "test_images", "test_labels")


def policy_of(data: DataConfig) -> RetryPolicy:
    """The download limits configured in ``params/data/``."""
    return RetryPolicy(
        data.timeout_s, data.retries, data.backoff_s, int(data.max_file_mb * MB), data.attempt_s
    )


def fetch_dataset(data: DataConfig, dest_dir: str | Path) -> list[Path]:
    """Make ``dest_dir`` hold every verified file of the dataset, trying the mirrors in order."""
    mirrors = mirrors_with_override(data.mirrors)
    policy = policy_of(data)
    return [
        fetch_file(RemoteFile(spec.name, spec.sha256), mirrors, dest_dir, policy)
        for spec in (getattr(data.files, key) for key in DATA_FILES)
    ]
