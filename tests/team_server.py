"""The team tracking server (scripts/tracking-server: PostgreSQL, MLflow and the S3-protocol
object server) started and stopped for tests."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO, run, stage_env

SCRIPT = REPO / "scripts" / "tracking-server"
USER = "team-admin"
BUCKET = "mnist-softmax"


@dataclass(frozen=True)
class TeamServer:
    """A running server: its URI, the environment a client (or the script) needs, and the
    object server's variables from ``s3-env`` (key pair and endpoint, for DVC and boto3)."""

    uri: str
    env: dict[str, str]
    state: Path
    s3_env: dict[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3_env(env: dict[str, str]) -> dict[str, str]:
    """Parse ``scripts/tracking-server s3-env`` (one ``export A=1 B=2`` line) into a dict."""
    line = run([str(SCRIPT), "s3-env"], REPO, env, timeout=30).stdout.strip()
    assert line.startswith("export "), line
    return dict(item.split("=", 1) for item in line.removeprefix("export ").split())


def s3_client(variables: dict[str, str]):
    """A boto3 S3 client for the object server, from the ``s3-env`` variables."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=variables["S3_ENDPOINT_URL"],
        aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def bucket_keys(variables: dict[str, str], prefix: str = "") -> list[str]:
    """Every key in the bucket under ``prefix``."""
    paginator = s3_client(variables).get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=BUCKET, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def start_team_server() -> Iterator[TeamServer]:
    """Start a server in a fresh state folder; yield it; stop it and remove the folder."""
    # postgres runs as the `postgres` user when we are root: the folder must be searchable by it
    state = Path(tempfile.mkdtemp(prefix="team-server-"))
    state.chmod(0o711)
    env = stage_env(
        TRACKING_SERVER_DIR=str(state / "server"),
        MLFLOW_SERVER_PORT=str(free_port()),
        TRACKING_PG_PORT=str(free_port()),
        S3_PORT=str(free_port()),
        MLFLOW_TRACKING_USERNAME=USER,
        MLFLOW_TRACKING_PASSWORD=secrets.token_urlsafe(16),
    )
    try:
        proc = run([str(SCRIPT), "start"], REPO, env, timeout=240)
        uri = proc.stdout.strip().splitlines()[-1]
        yield TeamServer(uri, {**env, "MLFLOW_TRACKING_URI": uri}, state, s3_env(env))
    finally:
        subprocess.run([str(SCRIPT), "stop"], cwd=REPO, env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
