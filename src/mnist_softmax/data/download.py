"""Fetch IDX files from a list of mirrors: verify, then move (after fatiando/pooch).

Each file is streamed to a temporary file beside its target, decompressed, checked against the
sha256 of its decompressed bytes (gzip bytes differ between mirrors) and its IDX header, and only
then moved into place with ``os.replace``. A corrupt download never lands under the real name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mnist_softmax.atomic import atomic_path
from mnist_softmax.config import DataConfig
from mnist_softmax.data.idx import gunzip, parse_idx
from mnist_softmax.errors import DataError

log = logging.getLogger(__name__)

MIRROR_ENV = "DATA_MIRROR"
CHUNK = 1 << 20
NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, OSError)


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
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0


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


def _download(url: str, dest: Path, timeout_s: float) -> None:
    """Stream ``url`` into ``dest`` with a progress line every ~25%."""
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-softmax"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response, dest.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done, next_report = 0, 0.25
        for chunk in iter(lambda: response.read(CHUNK), b""):
            out.write(chunk)
            done += len(chunk)
            if total > CHUNK and done / total >= next_report:
                log.info("  %s: %.1f / %.1f MB", url.rsplit("/", 1)[-1], done / 1e6, total / 1e6)
                next_report += 0.25


def _verified_bytes(gz_path: Path, remote: RemoteFile, url: str) -> bytes:
    raw = gunzip(gz_path.read_bytes(), url)
    got = hashlib.sha256(raw).hexdigest()
    if got != remote.sha256.lower():
        raise DataError(
            f"{url}: sha256 of decompressed bytes is {got}, expected {remote.sha256}; "
            "if upstream changed on purpose, put the new checksum in params/data/"
        )
    parse_idx(raw, url)
    return raw


def _fetch_verified(url: str, remote: RemoteFile, target: Path, timeout_s: float) -> None:
    """Download to a temporary .gz beside ``target``; replace ``target`` only once verified."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{remote.name}.{os.getpid()}.part")
    try:
        _download(url, part, timeout_s)
        raw = _verified_bytes(part, remote, url)
        with atomic_path(target) as staged:
            staged.write_bytes(raw)
    finally:
        part.unlink(missing_ok=True)


def fetch_file(
    remote: RemoteFile,
    mirrors: Sequence[str],
    dest_dir: str | Path,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Make ``dest_dir/<name without .gz>`` hold the verified file; return its path.

    Network errors are retried with exponential back-off, then the next mirror is tried; bad
    bytes (HTML page, truncation, checksum, IDX header) move on to the next mirror at once.
    """
    target = Path(dest_dir) / remote.local_name
    if not needs_download(target, remote.sha256):
        log.info("%s: present and verified, skipped", target)
        return target
    failures: list[str] = []
    for base in mirrors:
        url = f"{base.rstrip('/')}/{remote.name}"
        for attempt in range(1, policy.retries + 1):
            try:
                log.info("%s: downloading from %s (attempt %d)", remote.name, base, attempt)
                _fetch_verified(url, remote, target, policy.timeout_s)
                return target
            except DataError as exc:
                failures.append(str(exc))
                break
            except NETWORK_ERRORS as exc:
                failures.append(f"{url}: {exc}")
                if attempt < policy.retries:
                    sleep(policy.backoff_s * 2 ** (attempt - 1))
    raise DataError(
        f"{remote.name}: no mirror gave a valid file ({len(mirrors)} tried; set ${MIRROR_ENV} "
        f"to a reachable mirror):\n  " + "\n  ".join(failures)
    )


DATA_FILES = ("train_images", "train_labels", "test_images", "test_labels")


def fetch_dataset(data: DataConfig, dest_dir: str | Path) -> list[Path]:
    """Make ``dest_dir`` hold every verified file of the dataset, trying the mirrors in order."""
    mirrors = mirrors_with_override(data.mirrors)
    policy = RetryPolicy(data.timeout_s, data.retries, data.backoff_s)
    return [
        fetch_file(RemoteFile(spec.name, spec.sha256), mirrors, dest_dir, policy)
        for spec in (getattr(data.files, key) for key in DATA_FILES)
    ]
