"""Scheduled retraining under faults, with the real dvc and a real MLflow sqlite store.

``test_cron_story`` is ONE explicit scenario of successive cron jobs on one project, each step
starting from the state the previous one left (so they are steps of one test, not tests that
depend on their order): a sweep experiment beside the workspace model, the first job (must
pick the workspace's model), an overlapping job (locked out), a worse challenger (kept),
SIGTERM mid-training (interrupted, nothing left running, no version), SIGKILL mid-training,
a manual rollback, a promotion by someone else during a job, corrupted data upstream.
The other tests need only the project, not its history: bad config, tracking server down,
and which tracking URI wins.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import psutil
import pytest
from conftest import make_project, run

pytestmark = pytest.mark.slow

NAME = "mnist-softmax"


@pytest.fixture(scope="module")
def repo(tmp_path_factory, shared_mnist):
    path, env = make_project(tmp_path_factory.mktemp("retrain"), shared_mnist.as_uri())
    for relative, old, new in [
        ("optimizer/sgd.yaml", "epochs: ", "epochs: 3  #"),  # a weak first champion:
        ("data/mnist.yaml", "deskew: ", "deskew: false  #"),  # 3 epochs on raw pixels
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


def versions(path) -> list[str]:
    found = client(path).search_model_versions(f"name = '{NAME}'")
    return sorted((str(v.version) for v in found), key=int)


def history(path, env) -> list[list[str]]:
    """The rows of `mnist-softmax history --csv`, newest first, without the header."""
    lines = run(["mnist-softmax", "history", "--csv"], path, env).stdout.splitlines()
    return [line.split(",") for line in lines[1:]]


def pipeline_processes(path) -> list[str]:
    """Processes still running inside the project (dvc, a stage): none after a job ends."""
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        cwd = proc.info.get("cwd") or ""
        if cwd.startswith(str(path)) and proc.pid != os.getpid():
            found.append(" ".join(proc.info.get("cmdline") or []))
    return found


def first_job_picks_the_workspace_model_not_the_newest_version(path, env):
    """Defect 10: after `dvc repro` (v1) and a sweep experiment (v2), v1 is the challenger."""
    run(["dvc", "repro"], path, env)
    run(["dvc", "exp", "run", "--temp", "-S", "optimizer.lr=0.3"], path, env)
    assert versions(path) == ["1", "2"]
    proc = retrain(path, env)
    assert proc.returncode == 0, proc.stderr
    assert "retrain promoted: challenger v1, champion none -> v1" in proc.stdout
    assert champion(path) == "1"


def overlapping_job_is_locked_out_and_worse_challenger_kept(path, env):
    # a deskewed challenger against the raw-pixel champion: each scored through its own pyfunc
    worse = ("-S", "optimizer.epochs=1", "-S", "optimizer.lr=0.001", "-S", "data.deskew=true")
    first = start_retrain(path, env, *worse)
    wait_for_line(first, "running: dvc")  # holds the lock from here on
    reports = len(list((path / "reports" / "retrain").glob("*.json")))
    second = retrain(path, env)
    assert second.returncode == 75
    assert "another retrain job holds" in second.stderr
    assert len(list((path / "reports" / "retrain").glob("*.json"))) == reports
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert "retrain kept: challenger v3, champion v1 -> v1" in out
    assert champion(path) == "1"
    version = client(path).get_model_version(NAME, "3")
    assert version.tags["retrain.decision"] == "kept"
    report = last_report(path)
    evaluated = client(path).get_run(version.run_id).data  # its evaluate stage
    assert evaluated.params["data.deskew"] == "True"
    scored = report["metrics"]["challenger"]["test/acc"]
    assert scored == pytest.approx(evaluated.metrics["test/acc"], abs=1e-6)
    assert "test/acc" in version.tags["retrain.reasons"]
    assert evaluated.tags["retrain.decision"] == "kept"
    assert report["metrics"]["challenger"]["test/acc"] < report["metrics"]["champion"]["test/acc"]
    assert history(path, env)[0][1:3] == ["kept", "3"]


def sigterm_stops_the_pipeline_and_records_the_job(path, env):
    """Defect 3: SIGTERM to retrain alone (what cron, systemd or `timeout` send)."""
    before = versions(path)
    proc = start_retrain(path, env, "-S", "optimizer.epochs=500")
    wait_for_line(proc, "[train] epoch 2/500")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    assert "retrain interrupted: challenger none, champion v1 -> v1" in out
    assert pipeline_processes(path) == []  # dvc and its stage stopped with the job
    time.sleep(3)
    assert versions(path) == before  # nothing registered after the signal
    assert last_report(path)["decision"] == "interrupted"
    assert history(path, env)[0][1] == "interrupted"
    assert champion(path) == "1"


def sigkill_mid_training_then_next_job_promotes(path, env):
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
    nxt = retrain(path, env, "-S", "optimizer.epochs=10", "-S", "data.deskew=true")
    assert nxt.returncode == 0, nxt.stderr
    assert client(path).get_run(stale.info.run_id).info.status == "KILLED"
    runs = client(path).search_runs([experiment.experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert "retrain promoted: challenger v4, champion v1 -> v4" in nxt.stdout  # deskewed > raw


def manual_rollback(path, env):
    from mnist_softmax.tracking.registry import alias_version

    proc = run(["mnist-softmax", "promote", "3"], path, env)
    assert "v4 -> v3" in proc.stdout
    assert champion(path) == "3"
    assert alias_version(client(path), NAME, "previous") == "4"
    again = run(["mnist-softmax", "promote", "3"], path, env)  # already champion: a no-op
    assert "v3 -> v3" in again.stdout
    assert alias_version(client(path), NAME, "previous") == "4"  # rollback target kept
    missing = run(["mnist-softmax", "promote", "99"], path, env, check=False)
    assert missing.returncode == 1 and "no version 99" in missing.stderr


def champion_moved_during_the_job_is_not_overwritten(path, env):
    assert champion(path) == "3"  # the weak model: any real challenger beats it
    # ... on accuracy and NLL: an underfit model can be the better calibrated one (v3's ECE
    # is about 0.007 with T fitted on half the validation split, next to 0.011), and that
    # rule is not what this step tests
    accuracy_and_nll = ("-S", "retrain.lower_is_better=[test/nll_calibrated]")
    proc = start_retrain(path, env, "-S", "optimizer.epochs=11", "-S", "data.deskew=true",
                         *accuracy_and_nll)  # fmt: skip
    wait_for_line(proc, "[train] epoch 1/11")
    client(path).set_registered_model_alias(NAME, "champion", "1")  # someone else promotes v1
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 6, out
    assert "moved from v3 to v1" in out
    assert champion(path) == "1"
    report = last_report(path)
    assert report["decision"] == "conflict"
    assert (report["champion_before"], report["champion_after"]) == ("3", "1")  # not stale


def corrupted_upstream_data_fails_and_keeps_champion(path, env, scratch, shared_mnist):
    mirror = scratch / "mirror"
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
    assert history(path, env)[0][1] == "failed"  # failures are in the job history too


def test_cron_story(repo, tmp_path, shared_mnist):
    path, env = repo
    first_job_picks_the_workspace_model_not_the_newest_version(path, env)
    overlapping_job_is_locked_out_and_worse_challenger_kept(path, env)
    sigterm_stops_the_pipeline_and_records_the_job(path, env)
    sigkill_mid_training_then_next_job_promotes(path, env)
    manual_rollback(path, env)
    champion_moved_during_the_job_is_not_overwritten(path, env)
    corrupted_upstream_data_fails_and_keeps_champion(path, env, tmp_path, shared_mnist)


# --- faults that need only the project, not its history ---

NO_SERVER = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def assert_failed_job(proc, path, env, code: int, needle: str) -> None:
    """One error line naming the cause, the documented exit code, a history entry."""
    assert proc.returncode == code, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert last_report(path)["decision"] == "failed"
    assert history(path, env)[0][1] == "failed"


def test_bad_override_exits_2_and_is_recorded(repo):
    path, env = repo
    proc = retrain(path, env, "-S", "optimizer.lr=abc")
    assert_failed_job(proc, path, env, 2, "optimizer.lr='abc'")


def test_yaml_syntax_error_in_params_exits_2_and_is_recorded(repo):
    path, env = repo
    sgd = path / "params" / "optimizer" / "sgd.yaml"
    text = sgd.read_text()
    sgd.write_text(text + "lr: [0.1\n")
    try:
        proc = retrain(path, env)
    finally:
        sgd.write_text(text)
    assert_failed_job(proc, path, env, 2, f"{sgd}, line")


def test_tracking_server_down_is_one_line_and_recorded(repo):
    path, env = repo
    down = {**env, **NO_SERVER, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    proc = retrain(path, down)
    assert_failed_job(proc, path, env, 1, "MLflow at http://127.0.0.1:9 failed")


def test_tracking_uri_override_is_used_and_its_password_never_shown(repo):
    """Defects 5 and 4: the parent job uses the override's store; the password stays hidden."""
    path, env = repo
    proc = retrain(path, {**env, **NO_SERVER}, "-S", "tracking.uri=http://bob:pw123@127.0.0.1:9")
    assert_failed_job(proc, path, env, 1, "MLflow at http://127.0.0.1:9 failed")
    assert "pw123" not in proc.stdout + proc.stderr + json.dumps(last_report(path))


def test_tracking_uri_override_conflicting_with_the_variable_exits_2(repo):
    path, env = repo
    with_var = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{path / 'mlflow' / 'mlflow.db'}"}
    proc = retrain(path, with_var, "-S", "tracking.uri=sqlite:////tmp/elsewhere.db")
    assert_failed_job(proc, path, env, 2, "conflicts with $MLFLOW_TRACKING_URI")


def test_tracking_uri_override_reaches_the_pipeline(repo, tmp_path):
    """Defect 5: the run and the model version land in the override's store, not the default."""
    path, env = repo
    other = f"sqlite:///{tmp_path / 'other.db'}"
    default_versions = versions(path)
    proc = retrain(path, env, "-S", f"tracking.uri={other}", "-S", "optimizer.epochs=1")
    assert proc.returncode == 0, proc.stderr
    assert "retrain promoted: challenger v1, champion none -> v1" in proc.stdout
    from mlflow.tracking import MlflowClient

    aliases = MlflowClient(other).get_registered_model(NAME).aliases
    assert {alias: str(v) for alias, v in aliases.items()} == {"champion": "1"}
    assert versions(path) == default_versions
