"""Scheduled retraining under faults, with the real dvc and a real MLflow sqlite store.

The tests share one project and run in file order, like successive cron jobs: first job
(promotes), overlapping job (locked out), worse challenger (kept), SIGKILL mid-training,
a promotion by someone else during a job, corrupted data upstream, and a manual rollback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest
from conftest import make_project, run

pytestmark = pytest.mark.slow

NAME = "mnist-softmax"


@pytest.fixture(scope="module")
def repo(tmp_path_factory, shared_mnist):
    path, env = make_project(tmp_path_factory.mktemp("retrain"), shared_mnist.as_uri())
    for relative, old, new in [
        ("optimizer/sgd.yaml", "epochs: ", "epochs: 3  #"),  # a weak first champion
        ("data/mnist.yaml", "retries: ", "retries: 1  #"),  # unreachable mirrors fail fast
    ]:
        file = path / "params" / relative
        file.write_text(file.read_text().replace(old, new, 1))
    run(["python", "pipeline/compose.py"], path, env)
    run(["git", "commit", "-qam", "weak champion config"], path, env)
    return path, env


def client(path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{path / 'mlflow' / 'mlflow.db'}")


def champion(path) -> str | None:
    from mnist_softmax.tracking.registry import alias_version

    return alias_version(client(path), NAME)


def retrain(path, env, *args: str, check: bool = False):
    return run(["mnist-softmax", "retrain", *args], path, env, check=check)


def start_retrain(path, env, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["mnist-softmax", "retrain", *args],
        cwd=path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: dvc and the stage die with it
    )


def wait_for_line(proc: subprocess.Popen, needle: str, timeout_s: float = 180) -> list[str]:
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return seen
    pytest.fail(f"{needle!r} never appeared:\n{''.join(seen)}")


def last_report(path) -> dict:
    reports = sorted((path / "reports" / "retrain").glob("*.json"), key=os.path.getmtime)
    return json.loads(reports[-1].read_text())


def test_first_job_promotes_and_an_overlapping_job_is_locked_out(repo):
    path, env = repo
    first = start_retrain(path, env)
    wait_for_line(first, "running: dvc repro")  # holds the lock from here on
    second = retrain(path, env)
    assert second.returncode == 75
    assert "another retrain job holds" in second.stderr
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert "retrain promoted" in out
    assert champion(path) == "1"
    assert last_report(path)["decision"] == "promoted"


def test_worse_challenger_is_kept_and_recorded(repo):
    path, env = repo
    proc = retrain(path, env, "-S", "optimizer.epochs=1", "-S", "optimizer.lr=0.001")
    assert proc.returncode == 0, proc.stderr
    assert "retrain kept: challenger v2, champion v1 -> v1" in proc.stdout
    assert champion(path) == "1"
    version = client(path).get_model_version(NAME, "2")
    assert version.tags["retrain.decision"] == "kept"
    assert "test/acc" in version.tags["retrain.reasons"]
    run_tags = client(path).get_run(version.run_id).data.tags
    assert run_tags["retrain.decision"] == "kept"
    report = last_report(path)
    assert report["metrics"]["challenger"]["test/acc"] < report["metrics"]["champion"]["test/acc"]
    history = run(["mnist-softmax", "history", "--csv"], path, env).stdout
    assert history.splitlines()[1].split(",")[1:3] == ["kept", "2"]


def test_sigkill_mid_training_then_next_job_works(repo):
    path, env = repo
    proc = start_retrain(path, env, "-S", "optimizer.epochs=500")
    wait_for_line(proc, "[train] epoch 2/500")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert champion(path) == "1"
    # a log stage killed earlier would leave a RUNNING run: fake one whose process is gone
    experiment = client(path).get_experiment_by_name(NAME)
    stale = client(path).create_run(
        experiment.experiment_id,
        tags={"mnist_softmax.pid": str(proc.pid), "mnist_softmax.host": socket.gethostname()},
    )
    nxt = retrain(path, env, "-S", "optimizer.epochs=10")
    assert nxt.returncode == 0, nxt.stderr
    assert client(path).get_run(stale.info.run_id).info.status == "KILLED"
    runs = client(path).search_runs([experiment.experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert last_report(path)["decision"] in ("promoted", "kept")


def test_manual_rollback(repo):
    path, env = repo
    before = champion(path)
    proc = run(["mnist-softmax", "promote", "2"], path, env)
    assert f"v{before} -> v2" in proc.stdout
    assert champion(path) == "2"
    from mnist_softmax.tracking.registry import alias_version

    assert alias_version(client(path), NAME, "previous") == before
    again = run(["mnist-softmax", "promote", "2"], path, env)  # already champion: a no-op
    assert "v2 -> v2" in again.stdout
    assert alias_version(client(path), NAME, "previous") == before  # rollback target kept
    missing = run(["mnist-softmax", "promote", "99"], path, env, check=False)
    assert missing.returncode == 1 and "no version 99" in missing.stderr


def test_champion_moved_during_the_job_is_not_overwritten(repo):
    path, env = repo
    assert champion(path) == "2"  # the weak model: any real challenger beats it
    proc = start_retrain(path, env, "-S", "optimizer.epochs=11")
    wait_for_line(proc, "[train] epoch 1/11")
    client(path).set_registered_model_alias(NAME, "champion", "1")  # someone else promotes v1
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 6, out
    assert "moved from v2 to v1" in out
    assert champion(path) == "1"
    assert last_report(path)["decision"] == "conflict"


def test_corrupted_upstream_data_fails_and_keeps_champion(repo, shared_mnist, tmp_path):
    path, env = repo
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for gz in shared_mnist.glob("*.gz"):
        blob = gz.read_bytes()
        (mirror / gz.name).write_bytes(blob[: len(blob) // 3])
    raw_before = {p.name: p.stat().st_mtime_ns for p in (path / "data" / "raw").iterdir()}
    proc = retrain(path, {**env, "DATA_MIRROR": mirror.as_uri()}, "--force")
    assert proc.returncode == 3, proc.stderr
    assert "truncated" in proc.stderr
    assert champion(path) == "1"
    assert {p.name: p.stat().st_mtime_ns for p in (path / "data" / "raw").iterdir()} == raw_before
    assert last_report(path)["decision"] == "failed"
    history = run(["mnist-softmax", "history", "--csv"], path, env).stdout.splitlines()
    assert history[1].split(",")[1] == "failed"  # failures are in the job history too
