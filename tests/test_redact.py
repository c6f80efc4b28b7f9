"""Credentials never reach MLflow or the logs: the redaction rules, then a real server run."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import REPO, run, stage_env
from tracking_fixtures import write_fake_outputs

from mnist_softmax.redact import MASK, install_log_redaction, redact_mapping, redact_text
from mnist_softmax.tracking.store import strip_credentials


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://alice:s3cret@host:5050/x", f"http://{MASK}@host:5050/x"),
        ("uri: https://token@example.com", f"uri: https://{MASK}@example.com"),
        ("-S tracking.uri=http://u:p@h:1", f"-S tracking.uri=http://{MASK}@h:1"),
        ("password: hunter2", f"password: {MASK}"),
        ("MLFLOW_TRACKING_PASSWORD=hunter2 next", f"MLFLOW_TRACKING_PASSWORD={MASK} next"),
        ("api_key = abc123", f"api_key = {MASK}"),
        ("sqlite:////tmp/mlflow.db and user@example.com", None),  # nothing secret: unchanged
    ],
)
def test_redact_text(text, expected):
    assert redact_text(text) == (text if expected is None else expected)


def test_redact_mapping_masks_secret_keys_and_url_userinfo():
    got = redact_mapping(
        {"tracking.uri": "http://a:b@h", "db.password": "x", "optimizer.lr": 0.1, "my_token": 3}
    )
    assert got == {
        "tracking.uri": f"http://{MASK}@h",
        "db.password": MASK,
        "optimizer.lr": "0.1",
        "my_token": MASK,
    }


def test_every_log_record_is_redacted_whatever_its_logger(caplog):
    install_log_redaction()
    logger = logging.getLogger("mlflow.some.module")
    logger.addHandler(caplog.handler)  # mlflow may have set its loggers not to propagate
    try:
        with caplog.at_level(logging.INFO, logger="mlflow.some.module"):
            logger.info("View run at %s", "http://u:pw@h/#/runs/1")
    finally:
        logger.removeHandler(caplog.handler)
    assert set(caplog.messages) == {f"View run at http://{MASK}@h/#/runs/1"}  # once or twice


def test_credentials_move_from_the_uri_to_mlflow_variables(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert strip_credentials("http://alice:p%40ss@127.0.0.1:5050/") == "http://127.0.0.1:5050/"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "p@ss"
    assert strip_credentials("sqlite:////x/mlflow.db") == "sqlite:////x/mlflow.db"


@pytest.mark.slow
def test_password_in_tracking_uri_reaches_no_param_artifact_tag_or_log_line(
    team_server, tmp_path, monkeypatch
):
    """Defect 4: log to the basic-auth team server with the password inside tracking.uri."""
    password = team_server.env["MLFLOW_TRACKING_PASSWORD"]
    user = team_server.env["MLFLOW_TRACKING_USERNAME"]
    parts = urlsplit(team_server.uri)
    uri = f"{parts.scheme}://{user}:{password}@{parts.netloc}"
    write_fake_outputs(tmp_path, uri)
    env = stage_env()  # no MLFLOW_* variables: the credentials come from the URI alone
    proc = run([sys.executable, str(REPO / "pipeline" / "log.py")], tmp_path, env)
    assert password not in proc.stdout + proc.stderr
    assert "View run" in proc.stdout  # mlflow's own line is there, without the password

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    client = MlflowClient(team_server.uri)
    experiment = client.get_experiment_by_name("tracking-tests")
    (logged,) = client.search_runs([experiment.experiment_id], max_results=1)
    assert logged.data.params["tracking.uri"] == f"{parts.scheme}://{MASK}@{parts.netloc}"
    assert not [k for k, v in {**logged.data.params, **logged.data.tags}.items() if password in v]
    logged_files = {
        name: Path(client.download_artifacts(logged.info.run_id, name, str(tmp_path / "dl")))
        for name in ("pipeline/params.yaml", "pipeline/dvc.lock")
    }
    assert not [name for name, path in logged_files.items() if password in path.read_text()]
    assert (
        f"uri: {parts.scheme}://{MASK}@{parts.netloc}"
        in logged_files["pipeline/params.yaml"].read_text()
    )
