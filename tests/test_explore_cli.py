"""``mnist-softmax explore`` as a person runs it: serves on loopback, survives bad requests,
stops cleanly on Ctrl-C or SIGTERM, and says in one line why it cannot start."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import explorer_fixtures
import psutil
import pytest
from conftest import REPO, stage_env
from explorer_fixtures import start_explorer, stop

from mnist_softmax.explorer.inputs import MAX_BODY_BYTES

trained_files = explorer_fixtures.trained_files


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_the_workspace_model_survives_bad_requests_and_stops_cleanly(trained_files, sig):
    workspace = trained_files.model.parents[1]
    proc, url = start_explorer(workspace)
    try:
        info = _get(f"{url}/api/model")  # no store, no --model: the workspace's model.npz
        assert info["source"] == "models/model.npz"
        assert info["temperature"] == pytest.approx(trained_files.temperature)
        assert info["examples"] == {"test": 24, "mistakes": 24}  # from data/prepared/test.npz
        assert psutil.Process(proc.pid).children(recursive=True) == []  # threads, no workers
        status, reply = _post(f"{url}/api/predict", b"x" * (MAX_BODY_BYTES + 1))
        assert status == 400 and "larger than" in reply["error"]
        status, reply = _post(f"{url}/api/predict", b'{"pixels": [1, 2]}')
        assert status == 400 and "784" in reply["error"]
        assert _get(f"{url}/api/softmax?z=1,0.8,0.1&kind=sparsemax")["p"][2] == 0.0  # alive
    finally:
        code = stop(proc, sig)
    assert code == 0
    assert "Traceback" not in proc.stderr.read()


def _explore(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mnist_softmax.cli", "explore", "--port", "0", *args]
    return subprocess.run(cmd, cwd=cwd, env=stage_env(), capture_output=True, text=True, timeout=60)


def test_missing_or_corrupt_model_is_one_line_and_exit_3(tmp_path):
    missing = _explore("--model", str(tmp_path / "nope.npz"))
    assert missing.returncode == 3 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [
        f"[explore] error: {tmp_path / 'nope.npz'} not found: run `make run` first, or pass --model"
    ]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    corrupt = _explore("--model", str(tmp_path / "bad.npz"))
    assert corrupt.returncode == 3 and "bad.npz is not an .npz file" in corrupt.stderr
    assert len(corrupt.stderr.strip().splitlines()) == 1


def test_port_in_use_is_one_line(trained_files):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _explore("--model", str(trained_files.model), "--port", str(port))
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_an_installed_copy_ships_the_page(tmp_path):
    """The page is package data: a wheel of the project holds every file the server sends.

    Built from a copy, so setuptools' build/ folder lands in tmp_path, not in the repository.
    """
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
           "-w", str(tmp_path / "dist"), str(source)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("mnist_softmax-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = REPO / "src" / "mnist_softmax" / "explorer" / "static"
    shipped = {f"mnist_softmax/explorer/static/{p.name}" for p in static.iterdir()}
    assert len(shipped) == 3 and shipped <= names
