"""Nothing of a retrain job outlives it: the keeper, the lock it holds, records of killed jobs,
and versions nobody judged.

The job here is a small script doing what ``mnist-softmax retrain`` does around its pipeline
(the lock, :class:`Interruptible`, one command that starts a grandchild and sleeps); it is killed
the ways a machine kills jobs, and the test watches the processes and the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from mnist_softmax.errors import PipelineError
from mnist_softmax.retraining.history import decisions, mark_killed_jobs

JOB = textwrap.dedent(
    """
    import os, sys
    from mnist_softmax.retraining.interrupt import Interruptible
    from mnist_softmax.retraining.lock import exclusive_lock

    pipeline = ("import os, pathlib, subprocess, sys, time\\n"
                "g = subprocess.Popen(['sleep', '120'])\\n"
                "pathlib.Path(sys.argv[1]).write_text(f'{os.getpid()} {g.pid}')\\n"
                "time.sleep(120)\\n")
    with Interruptible() as guard, exclusive_lock(sys.argv[1]) as fd:
        guard.keep_fds = (fd,)
        guard.run([sys.executable, "-c", pipeline, sys.argv[2]], dict(os.environ))
    """
)


def _start_job(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    pids_file = tmp_path / "pids"
    job = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "job.lock"), str(pids_file)],
        start_new_session=True,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not pids_file.exists() or len(pids_file.read_text().split()) < 2:
        assert job.poll() is None and time.monotonic() < deadline, job.stderr.read()
        time.sleep(0.05)
    keeper = psutil.Process(job.pid).children()
    pids = [int(p) for p in pids_file.read_text().split()] + [k.pid for k in keeper]
    return job, pids


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and _not_zombie(p)]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _lock_free(path: Path) -> bool:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


@pytest.mark.parametrize("how", ["SIGKILL job", "SIGKILL group", "SIGTERM"])
def test_no_process_of_a_killed_job_survives_and_the_lock_is_freed_last(tmp_path, how):
    job, pids = _start_job(tmp_path)
    assert len(pids) == 3  # keeper, pipeline, its child
    assert not _lock_free(tmp_path / "job.lock")
    if how == "SIGKILL group":
        os.killpg(job.pid, signal.SIGKILL)
    else:
        job.send_signal(signal.SIGKILL if how == "SIGKILL job" else signal.SIGTERM)
    job.wait(timeout=60)
    assert _gone_within(pids, 5.0), [p for p in pids if psutil.pid_exists(p)]
    assert _lock_free(tmp_path / "job.lock")
    if how == "SIGTERM":
        assert job.returncode == 1 and b"interrupted by SIGTERM" in job.stderr.read()


def test_the_lock_is_held_while_any_process_of_the_job_lives(tmp_path):
    """After SIGKILL of the job alone its pipeline may run for a moment: the lock with it."""
    job, pids = _start_job(tmp_path)
    keeper = psutil.Process(pids[2])
    keeper.suspend()  # the keeper cannot act: the pipeline lives on, so must the lock
    try:
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=10)
        time.sleep(0.5)
        assert psutil.pid_exists(pids[0]) and not _lock_free(tmp_path / "job.lock")
    finally:
        keeper.resume()
    assert _gone_within(pids, 5.0) and _lock_free(tmp_path / "job.lock")


def test_start_records_of_dead_jobs_become_killed(tmp_path):
    reports = tmp_path / "retrain"
    reports.mkdir()
    for stem, decision in (("2026-01-01T000000Z-aaaa", "running"),
                           ("2026-01-02T000000Z-bbbb", "promoted")):  # fmt: skip
        record = {"retrain_id": stem[-4:] * 8, "started": stem[:17], "decision": decision,
                  "champion_before": "1", "reasons": []}  # fmt: skip
        (reports / f"{stem}.json").write_text(json.dumps(record))
    assert mark_killed_jobs(reports) == ["aaaa" * 8]
    table = decisions(10, reports)
    assert table["decision"].tolist() == ["promoted", "killed"]
    assert "died without a word" in table["why"].iloc[1]
    assert mark_killed_jobs(reports) == []  # once


def test_a_version_no_job_judged_can_never_become_champion(tmp_path):
    from mlflow.tracking import MlflowClient

    from mnist_softmax.tracking.registry import TAG_DECISION, alias_version, move_champion

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("m")
    for _ in range(2):
        client.create_model_version("m", source=str(tmp_path))
    client.set_model_version_tag("m", "1", TAG_DECISION, "promoted")
    client.set_model_version_tag("m", "2", TAG_DECISION, "abandoned")
    move_champion(client, "m", "1", expected=None)
    with pytest.raises(PipelineError, match=r"v2 of m was registered by a retrain job that never"):
        move_champion(client, "m", "2", expected="1")
    assert alias_version(client, "m") == "1"


def test_a_half_written_dvc_lock_is_restored_from_git(tmp_path):
    from mnist_softmax.retraining.retrain import repair_dvc_lock

    lock = tmp_path / "dvc.lock"
    good = (Path(__file__).resolve().parents[1] / "dvc.lock").read_text()
    lock.write_text(good)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}  # fmt: skip
    for cmd in (["init", "-q"], ["add", "dvc.lock"], ["commit", "-qm", "lock"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, env=env, check=True)
    assert repair_dvc_lock("ab" * 16, lock) == []  # a sound file is left alone
    assert lock.read_text() == good
    cleaned = []
    for broken in ("", good.split("\n", 1)[1]):  # emptied; without its schema line
        lock.write_text(broken)  # what a dvc killed while rewriting dvc.lock leaves
        cleaned += repair_dvc_lock("ab" * 16, lock)
        assert lock.read_text() == good
        assert (tmp_path / "dvc.lock.broken-abababab").read_text() == broken
    assert len(cleaned) == 2 and "restored from git" in cleaned[0]
