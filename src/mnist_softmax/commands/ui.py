"""``mnist-softmax ui``: the MLflow UI on 127.0.0.1 for the project's store.

Starts ``mlflow server`` (in its own process group, so stopping it leaves no worker behind) on
the same store the log stage writes to (:func:`mnist_softmax.tracking.store.resolve_store`),
waits until it answers, prints the URL, and stops it on Ctrl-C or SIGTERM. Loopback only by default:
the store holds every run and model, and the server has no authentication.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mnist_softmax.config import PARAMS_FILE, load_or_compose
from mnist_softmax.errors import PipelineError
from mnist_softmax.tracking import runs_view
from mnist_softmax.tracking.store import Store, resolve_store

log = logging.getLogger(__name__)


def server_command(store: Store, host: str, port: int) -> list[str]:
    """Return the ``mlflow server`` command line for ``store`` (one worker: 2-core machines)."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store.uri]
    if store.artifact_location:
        cmd += ["--default-artifact-root", Path(store.artifact_location).as_uri()]
    return [*cmd, "--host", host, "--port", str(port), "--workers", "1"]


def start_server(store: Store, host: str = "127.0.0.1", port: int = 5000) -> subprocess.Popen:
    """Start the server in a new session (process group) and return its process."""
    if store.artifact_location:
        Path(store.artifact_location).mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:  # a clear message instead of a server that dies later
        try:
            probe.bind((host, port))
        except OSError:
            raise PipelineError(
                f"port {port} on {host} is in use: pick another with --port"
            ) from None
    # the server's own chatter goes to stderr: stdout carries only the URL line
    command = server_command(store, host, port)
    return subprocess.Popen(command, stdout=sys.stderr, start_new_session=True)


def wait_ready(proc: subprocess.Popen, url: str, timeout_s: float = 90.0) -> None:
    """Poll ``<url>/health`` until the server answers; fail if it exits or takes too long."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PipelineError(f"mlflow server exited with code {proc.returncode}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(f"{url}/health", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.5)
    raise PipelineError(f"mlflow server did not answer at {url} within {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate the server's whole process group (workers too); kill it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # workers that outlived their parent
        os.killpg(proc.pid, signal.SIGKILL)


def runs_url(url: str, experiment_name: str) -> str:
    """Return the UI address of the experiment's runs table, or ``url`` if it has none yet.

    ``workflowType=machine_learning`` matters: MLflow 3's UI otherwise opens every experiment
    on its GenAI pages (traces, token usage) and remembers that choice in the browser; the
    ``mlflow.experimentKind`` tag the log stage sets is only read when that selector is off.
    ``viewStateShareKey`` opens the table with the headline metrics as columns, when the
    experiment carries that view (:mod:`mnist_softmax.tracking.runs_view`).
    """
    query = urllib.parse.urlencode({"experiment_name": experiment_name})
    try:
        with urllib.request.urlopen(
            f"{url}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=10
        ) as response:
            experiment = json.loads(response.read())["experiment"]
    except (urllib.error.URLError, OSError, KeyError, ValueError):
        return url
    parameters = {"workflowType": "machine_learning"}
    if any(tag.get("key") == runs_view.TAG for tag in experiment.get("tags", [])):
        parameters[runs_view.URL_PARAMETER] = runs_view.SHARE_KEY
    page = f"{url}/#/experiments/{experiment['experiment_id']}/runs"
    return f"{page}?{urllib.parse.urlencode(parameters)}"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Serve the MLflow UI until Ctrl-C (or SIGTERM); return the exit code."""
    parser = argparse.ArgumentParser(
        prog="mnist-softmax ui",
        description="Serve the MLflow UI on 127.0.0.1 for the project's store.",
    )
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (5000)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--params", default=PARAMS_FILE, help="config naming the store")
    args = parser.parse_args(argv)
    try:
        store = resolve_store(load_or_compose(args.params).tracking)
        if store.uri.startswith(("http://", "https://")):
            sys.stdout.write(f"the tracking store is a server already: open {store.uri}\n")
            return 0
        signal.signal(signal.SIGTERM, _raise_interrupt)
        proc = start_server(store, args.host, args.port)
    except PipelineError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    url = f"http://{args.host}:{args.port}"
    try:
        wait_ready(proc, url)
        experiment = load_or_compose(args.params).tracking.experiment_name
        sys.stdout.write(
            f"MLflow UI: {runs_url(url, experiment)}  (store {store.uri}; Ctrl-C to stop)\n"
        )
        sys.stdout.flush()
        if proc.wait() != 0:
            log.error("error: mlflow server exited with code %d", proc.returncode)
            return 1
    except KeyboardInterrupt:
        log.info("stopping the server")
    except PipelineError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    finally:
        stop_server(proc)
    return 0
