"""The team tracking server (scripts/tracking-server) started and stopped for tests."""

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


@dataclass(frozen=True)
class TeamServer:
    """A running server: its URI and the environment a client (or the script) needs."""

    uri: str
    env: dict[str, str]
    state: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_team_server() -> Iterator[TeamServer]:
    """Start a server in a fresh state folder; yield it; stop it and remove the folder."""
    # postgres runs as the `postgres` user when we are root: the folder must be searchable by it
    state = Path(tempfile.mkdtemp(prefix="team-server-"))
    state.chmod(0o711)
    env = stage_env(
        TRACKING_SERVER_DIR=str(state / "server"),
        MLFLOW_SERVER_PORT=str(free_port()),
        TRACKING_PG_PORT=str(free_port()),
        MLFLOW_TRACKING_USERNAME=USER,
        MLFLOW_TRACKING_PASSWORD=secrets.token_urlsafe(16),
    )
    try:
        proc = run([str(SCRIPT), "start"], REPO, env, timeout=240)
        uri = proc.stdout.strip().splitlines()[-1]
        yield TeamServer(uri, {**env, "MLFLOW_TRACKING_URI": uri}, state)
    finally:
        subprocess.run([str(SCRIPT), "stop"], cwd=REPO, env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
