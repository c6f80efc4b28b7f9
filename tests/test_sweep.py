"""``mnist-softmax sweep`` for real: a 4-experiment DVC queue, two at a time, each experiment
one run on the team server (scripts/tracking-server), none lost; plus its queue parsing."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from conftest import copy_project, run

from mnist_softmax.sweeps import sweep

QUEUE_STATUS = """Task     Name        Created    Status
47d748e  surfy-data  12:03 PM   Running
eac3f58  taboo-sacs  12:03 PM   Queued
e4d031f  flaky-rise  11:48 AM   Success
dc62d94  oaten-coho  11:48 AM   Failed

Worker status: 1 active, 0 idle
"""


def test_queue_status_is_parsed(monkeypatch):
    monkeypatch.setattr(sweep, "_dvc", lambda *args: QUEUE_STATUS)
    assert sweep._queue_status() == {
        "surfy-data": "Running",
        "taboo-sacs": "Queued",
        "flaky-rise": "Success",
        "oaten-coho": "Failed",
    }


def test_queued_names_are_parsed(monkeypatch):
    output = "Queued experiment 'surfy-data' for future execution.\nQueued experiment 'x-y' for"
    monkeypatch.setattr(sweep, "_dvc", lambda *args: output)
    assert sweep._queue_experiments(["optimizer.lr=0.1,0.2"]) == ["surfy-data", "x-y"]


@pytest.mark.slow
def test_parallel_sweep_logs_every_experiment(team_server, tmp_path, file_mirror, monkeypatch):
    env = {**team_server.env, "DATA_MIRROR": file_mirror}
    path = copy_project(tmp_path / "project", env, epochs=2)
    run(["dvc", "repro", "preprocess"], path, env)  # the queued runs restore these from cache
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "baseline data"], path, env)

    grid = ["-S", "optimizer.lr=0.05,0.2", "-S", "optimizer.momentum=0.5,0.8"]
    proc = run(["mnist-softmax", "sweep", "--queue", "-j", "2", *grid], path, env, timeout=400)
    assert "FAILED" not in proc.stderr and "no MLflow run" not in proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:]]
    assert len(rows) == 4
    accuracy = [float(row[5]) for row in rows]  # experiment run_id status lr momentum test/acc
    assert accuracy == sorted(accuracy, reverse=True)  # best first

    from mlflow.tracking import MlflowClient

    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, team_server.env[key])
    client = MlflowClient(team_server.uri)
    experiment = client.get_experiment_by_name("mnist-softmax")
    swept_names = {row[0] for row in rows}  # the server is shared with other tests
    runs = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("dvc.exp_name") in swept_names
    ]
    assert len(runs) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["dvc.exp_name"] for r in runs} == swept_names
    swept = {(r.data.params["optimizer.lr"], r.data.params["optimizer.momentum"]) for r in runs}
    assert swept == {("0.05", "0.5"), ("0.05", "0.8"), ("0.2", "0.5"), ("0.2", "0.8")}
    run_ids = {r.info.run_id for r in runs}
    versions = client.search_model_versions("name = 'mnist-softmax'")
    assert not [v for v in versions if v.run_id in run_ids]  # logged, not registered
    assert all(r.data.tags["registered_model_version"] == "" for r in runs)
    assert all(r.outputs.model_outputs for r in runs)  # the model is logged all the same

    # the queue's workers exit by themselves once it is empty: nothing left running
    for _ in range(30):
        status = run(["dvc", "queue", "status"], path, env).stdout
        if "Worker status: 0 active, 0 idle" in status:
            break
        time.sleep(1)
    assert "Worker status: 0 active, 0 idle" in status


def test_failures_and_unlogged_experiments_are_reported(monkeypatch):
    monkeypatch.setattr(
        sweep, "_queue_experiments", lambda overrides: ["ok", "bad", "same", "lost"]
    )
    monkeypatch.setattr(sweep, "_dvc", lambda *args: "")
    statuses = {"ok": "Success", "bad": "Failed", "same": "Success", "lost": "Success"}
    monkeypatch.setattr(sweep, "_wait_for", lambda names, timeout: statuses)
    logs = {"bad": "ERROR: failed to reproduce 'train'", "same": sweep._LOG_SKIPPED}
    monkeypatch.setattr(sweep, "_queue_logs", lambda name: logs.get(name, ""))
    table = pd.DataFrame({"experiment": ["ok"], "test/acc": [0.92]})
    monkeypatch.setattr(sweep, "_runs_for", lambda names, metric, higher: table)
    result = sweep.run_sweep(["optimizer.lr=0.1,0.2"], jobs=2)
    assert result.failed == ("bad",)
    assert result.unchanged == ("same",)
    assert result.missing_runs == ("lost",)
    assert result.succeeded == ("ok", "same", "lost")
