"""The team setup for real: scripts/tracking-server (PostgreSQL + MLflow basic-auth, artifacts
proxied into the S3-protocol object server) on loopback, the full pipeline logging to it, and
the DVC remotes (a folder, and the object server's `team-s3`) shared by clones.

One server per session (start-up costs 20-30 s); the fixture always stops it, also on failure.
The object server's own tests start it alone (`start-s3`, well under a second) in fresh folders.
"""

from __future__ import annotations

import os
import socket
import stat
import time
import urllib.error
import urllib.request

import pytest
from conftest import REPO, copy_project, run, stage_env
from team_server import BUCKET, SCRIPT, bucket_keys, free_port, s3_client, s3_env

pytestmark = pytest.mark.slow


def test_start_refuses_without_credentials(tmp_path):
    env = stage_env(TRACKING_SERVER_DIR=str(tmp_path / "server"))
    proc = run([str(SCRIPT), "start"], REPO, env, check=False, timeout=30)
    assert proc.returncode == 2
    assert "MLFLOW_TRACKING_PASSWORD" in proc.stderr
    assert not (tmp_path / "server").exists()  # refused before touching anything


def test_unauthenticated_client_is_refused(team_server):
    url = f"{team_server.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    assert refused.value.code == 401
    request = urllib.request.Request(url, headers={"Authorization": "Basic dGVhbS1hZG1pbjp4"})
    with pytest.raises(urllib.error.HTTPError) as wrong:  # team-admin:x, a wrong password
        urllib.request.urlopen(request, timeout=30)
    assert wrong.value.code == 401


def test_status_reports_all_three_servers(team_server):
    proc = run([str(SCRIPT), "status"], REPO, team_server.env, timeout=60)
    assert "postgresql: running on 127.0.0.1" in proc.stdout
    assert f"mlflow: running on {team_server.uri}" in proc.stdout
    assert f"s3: running on {team_server.s3_env['S3_ENDPOINT_URL']}" in proc.stdout


def test_pipeline_logs_to_server_and_remote_restores_model(
    team_server, tmp_path, file_mirror, monkeypatch
):
    # the S3 key pair is in the pipeline's environment, as in a teammate's shell after s3-env
    env = {**team_server.env, **team_server.s3_env, "DATA_MIRROR": file_mirror}
    alice = copy_project(tmp_path / "alice", env, epochs=2)
    started_ms = int(time.time() * 1000)  # the session's server may hold other tests' runs
    run(["dvc", "repro"], alice, env)

    from mlflow.tracking import MlflowClient

    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, team_server.env[key])
    client = MlflowClient(team_server.uri)
    experiment = client.get_experiment_by_name("mnist-softmax")
    (logged,) = client.search_runs(
        [experiment.experiment_id], f"attributes.start_time >= {started_ms}"
    )
    assert logged.info.status == "FINISHED"
    assert logged.data.metrics["test/acc"] > 0.85
    assert logged.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied, not a local path
    version = client.get_model_version(
        "mnist-softmax", logged.data.tags["registered_model_version"]
    )
    assert version.run_id == logged.info.run_id
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert artifacts  # uploaded through the server into its artifact root: the object store
    keys = bucket_keys(team_server.s3_env, "mlflow/")
    assert any(logged.info.run_id in key for key in keys)
    assert any(key.endswith("/model.npz") for key in keys)
    # the S3 credentials were in the stage's environment, never in what the run records
    recorded = " ".join([*logged.data.params.values(), *logged.data.tags.values()])
    for secret in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert team_server.s3_env[secret] not in recorded

    # the shared remote: Alice pushes, Bob clones and pulls the identical model
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-f", "-d", "team", str(remote)], alice, env)
    run(["git", "add", "-A"], alice, env)
    run(["git", "commit", "-qm", "experiment + remote"], alice, env)
    run(["dvc", "push"], alice, env)
    bob = tmp_path / "bob"
    run(["git", "clone", "-q", str(alice), str(bob)], tmp_path, env)
    run(["dvc", "pull"], bob, env)
    assert (bob / "models/model.npz").read_bytes() == (alice / "models/model.npz").read_bytes()
    status = run(["dvc", "status"], bob, env)
    assert "changed" not in status.stdout

    # the object server's remote `team-s3` (committed .dvc/config; the endpoint and key pair
    # from s3-env): Alice pushes, Carol's clone has no cache and no outputs and pulls them all
    run(["dvc", "push", "-r", "team-s3"], alice, env)
    assert any(key.startswith("dvc/files/md5/") for key in bucket_keys(team_server.s3_env, "dvc/"))
    carol = tmp_path / "carol"
    run(["git", "clone", "-q", str(alice), str(carol)], tmp_path, env)
    assert not (carol / ".dvc/cache").exists() and not (carol / "models/model.npz").exists()
    run(["dvc", "pull", "-r", "team-s3"], carol, env)
    assert (carol / "models/model.npz").read_bytes() == (alice / "models/model.npz").read_bytes()
    status = run(["dvc", "status"], carol, env)
    assert "Data and pipelines are up to date" in status.stdout


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_object_server_keeps_objects_across_restart_and_stop_closes_its_port(tmp_path):
    env = stage_env(TRACKING_SERVER_DIR=str(tmp_path / "server"), S3_PORT=str(free_port()))
    try:
        run([str(SCRIPT), "start-s3"], REPO, env, timeout=60)
        credentials = tmp_path / "server/s3_credentials"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        variables = s3_env(env)
        assert variables["S3_ENDPOINT_URL"] == f"http://127.0.0.1:{env['S3_PORT']}"
        assert variables["AWS_ENDPOINT_URL_S3"] == variables["S3_ENDPOINT_URL"]
        payload = os.urandom(3 << 20)
        s3_client(variables).put_object(Bucket=BUCKET, Key="dvc/files/md5/ab/cdef", Body=payload)
        wrong = {**variables, "AWS_SECRET_ACCESS_KEY": "0" * 40}
        with pytest.raises(Exception, match="SignatureDoesNotMatch"):
            bucket_keys(wrong)

        run([str(SCRIPT), "stop"], REPO, env, timeout=60)
        assert not _listening(int(env["S3_PORT"]))
        assert not (tmp_path / "server/s3.pid").exists()

        run([str(SCRIPT), "start-s3"], REPO, env, timeout=60)
        assert s3_env(env) == variables  # the key pair is generated once
        assert bucket_keys(variables) == ["dvc/files/md5/ab/cdef"]
        body = s3_client(variables).get_object(Bucket=BUCKET, Key="dvc/files/md5/ab/cdef")["Body"]
        assert body.read() == payload
    finally:
        run([str(SCRIPT), "stop"], REPO, env, check=False, timeout=60)
    assert not _listening(int(env["S3_PORT"]))


@pytest.mark.parametrize("fault", ["port-busy", "binary-missing", "start-timeout"])
def test_object_server_fault_is_one_line_and_leaves_nothing_running(fault, tmp_path):
    state = tmp_path / "server"
    env = stage_env(
        TRACKING_SERVER_DIR=str(state),
        S3_PORT=str(free_port()),
        MLFLOW_TRACKING_USERNAME="admin",
        MLFLOW_TRACKING_PASSWORD="not-used",
        S3_START_TIMEOUT="1",
    )
    busy = socket.socket()
    if fault == "port-busy":
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env["S3_PORT"] = str(busy.getsockname()[1])
    elif fault == "binary-missing":
        env["RCLONE_BIN"] = str(tmp_path / "no-rclone")
    else:  # a server that never answers: the script must end it
        fake = tmp_path / "rclone"
        fake.write_text(f"#!/bin/sh\necho $$ > {tmp_path / 'fake.pid'}\nexec sleep 60\n")
        fake.chmod(0o755)
        env["RCLONE_BIN"] = str(fake)
    with busy:
        # the full `start` meets the object server first: nothing else starts after it fails
        proc = run([str(SCRIPT), "start"], REPO, env, check=False, timeout=60)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    expected = {
        "port-busy": f"port {env['S3_PORT']} on 127.0.0.1 is already in use",
        "binary-missing": "rclone not found",
        "start-timeout": "did not answer",
    }[fault]
    assert line.startswith("tracking-server: ") and expected in line
    assert not (state / "s3.pid").exists() and not (state / "pg").exists()
    if fault == "start-timeout":
        pid = int((tmp_path / "fake.pid").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
