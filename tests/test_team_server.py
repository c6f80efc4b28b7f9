"""The team setup for real: scripts/tracking-server (PostgreSQL + MLflow basic-auth, proxied
artifacts) on loopback, the full pipeline logging to it, and a DVC remote shared by two clones.

One server per session (start-up costs 20-30 s); the fixture always stops it, also on failure.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from conftest import REPO, copy_project, run, stage_env
from team_server import SCRIPT

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


def test_status_reports_both_servers(team_server):
    proc = run([str(SCRIPT), "status"], REPO, team_server.env, timeout=60)
    assert "postgresql: running on 127.0.0.1" in proc.stdout
    assert f"mlflow: running on {team_server.uri}" in proc.stdout


def test_pipeline_logs_to_server_and_remote_restores_model(
    team_server, tmp_path, file_mirror, monkeypatch
):
    env = {**team_server.env, "DATA_MIRROR": file_mirror}
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
    assert artifacts  # uploaded through the server into its artifact root
    assert any((team_server.state / "server/artifacts").rglob("model.npz"))

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
