"""``mnist-softmax compare`` and ``mnist-softmax ui`` against a real MLflow store in tmp_path."""

from __future__ import annotations

import contextlib
import io
import os
import select
import signal
import socket
import subprocess
import sys
import urllib.request

import pandas as pd
import psutil
import pytest
from tracking_fixtures import REPO

from mnist_softmax.commands import compare
from mnist_softmax.commands.ui import server_command
from mnist_softmax.tracking.store import Store

pytestmark = pytest.mark.slow


def test_compare_prints_the_last_runs_with_key_params_and_metrics(logged_runs, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri sets it
    _, logged, root = logged_runs[0.05]
    assert compare.main(["-n", "5", "--params", str(root / "params.yaml")]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:4] == ["run", "start", "status", "name"]
    assert {"acc", "nll_cal", "ece", "ece_cal", "T", "version", "exp"} <= set(header)
    row = next(line for line in out.splitlines() if "exp-b" in line)
    assert logged.run_id[:8] in row and "optimizer.epochs=3 optimizer.lr=0.05" in row


def test_compare_csv_is_machine_readable_and_full_precision(logged_runs, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _, logged, root = logged_runs[0.1]
    assert compare.main(["--csv", "-n", "10", "--params", str(root / "params.yaml")]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"version": "string"})
    assert list(table.columns) == list(compare.COLUMNS)
    row = table.set_index("run").loc[logged.run_id]
    assert row["acc"] == pytest.approx(0.91) and row["exp"] == "exp-a"
    assert row["name"] == "optimizer.epochs=3 optimizer.lr=0.1"  # as in the MLflow UI
    assert str(row["version"]) == logged.model_version


def test_server_command_binds_loopback_on_the_store():
    cmd = server_command(Store("sqlite:////x/mlflow.db", "/x/artifacts"), "127.0.0.1", 5123)
    assert cmd[cmd.index("--backend-store-uri") + 1] == "sqlite:////x/mlflow.db"
    assert cmd[cmd.index("--default-artifact-root") + 1] == "file:///x/artifacts"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "5123" in cmd


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ui_answers_on_loopback_and_stops_without_orphans(tracking_store, tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_store}
    cmd = [sys.executable, "-m", "mnist_softmax.cli", "ui", "--port", str(port),
           "--params", str(tmp_path / "absent.yaml")]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    family: list[psutil.Process] = []
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 80)
        assert ready, "the UI printed no URL within 80 s"
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert response.status == 200
        family = psutil.Process(proc.pid).children(recursive=True)
        assert family, "mlflow server should run as a child of the ui command"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"orphaned server processes: {alive}"
    finally:  # whatever failed above, leave nothing running
        for child in [*family, psutil.Process(proc.pid)] if proc.poll() is None else family:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
