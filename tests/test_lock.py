"""The retrain job lock: exclusive across processes, released by the kernel when its holder dies."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mnist_softmax.retraining.lock import LockBusyError, exclusive_lock


def test_lock_is_exclusive_across_processes_and_survives_sigkill(tmp_path):
    lock = tmp_path / "retrain.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockBusyError, match=f"pid {holder.pid}"), exclusive_lock(lock):
            pass
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the dead holder's lock: no stale lock after SIGKILL
    with exclusive_lock(lock):
        assert lock.read_text().strip() != str(holder.pid)


_HOLD_LOCK = """
import sys, time
from mnist_softmax.retraining.lock import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""
