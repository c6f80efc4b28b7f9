"""The chaos script on a real project: three retrain jobs killed at random moments (seeded), and
every invariant checked after each (scripts/chaos_retrain.py; the README reports a long run)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, stage_env

pytestmark = pytest.mark.slow


def test_three_killed_jobs_hold_every_invariant(file_mirror):
    env = stage_env(file_mirror)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "chaos_retrain.py"), "--cycles", "3",
         "--seed", "3", "--max-kill-s", "25"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("cycle ")]
    assert len(lines) == 3 and all(line.endswith("invariants hold") for line in lines)
    assert "all invariants held over 3 cycles (seed 3)" in proc.stdout
