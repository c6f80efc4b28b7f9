"""An exclusive, non-blocking job lock: two scheduled retrains never overlap.

``flock`` locks belong to the open file, so the kernel releases them when the holder dies, even
by SIGKILL: a crashed job never leaves a stale lock behind (unlike a pid file). The block gets
the descriptor: a job hands it to the keeper of its pipeline (:mod:`.keeper`), so the lock is
released only when the job's last process is gone, not when the job itself dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from mnist_softmax.errors import PipelineError

LOCK_FILE = ".retrain.lock"  # the one lock of retrain and promote, in the project root


class LockBusyError(PipelineError):
    """Another job holds the lock; exit code 75 is EX_TEMPFAIL: try again later."""

    exit_code = 75


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[int]:
    """Hold an exclusive flock on ``path`` for the block (yields its descriptor), or raise
    LockBusyError at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise LockBusyError(
                f"another retrain job holds {path} (pid {holder}); this one exits without work"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)
