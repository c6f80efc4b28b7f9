"""Sweeps on a Dask cluster: blocks, addresses, results equal to the one-process sweep, and
faults on a real scheduler with real worker processes (scripts/cluster).

The end-to-end test shares one project copy and one cluster across its steps (a cluster starts
in about 3 s, a project's prepared data in about 10 s), and always stops the cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, copy_project, run, stage_env
from team_server import free_port

from mnist_softmax.cluster.address import cluster_address
from mnist_softmax.cluster.runner import ClusterRun, plan_blocks
from mnist_softmax.config import compose, config_from_container
from mnist_softmax.data.prepare import PreparedData
from mnist_softmax.errors import ClusterError
from mnist_softmax.sweeps.fast_sweep import SweepData, SweepPlan, run_in_process

SCRIPT = REPO / "scripts" / "cluster"
GRID16 = ["-S", "optimizer.lr=0.05,0.1,0.2,0.5", "-S", "model.l2=1e-4,1e-3,2e-3,5e-3"]


def test_blocks_keep_every_worker_busy_and_stay_within_their_stack():
    stacks = [list(range(0, 10)), list(range(10, 13))]
    blocks = plan_blocks(stacks, workers=2)  # 13 configs, 2 workers: blocks of at most 4
    assert sorted(k for block in blocks for k in block) == list(range(13))
    assert all(set(b) <= set(stacks[0]) or set(b) <= set(stacks[1]) for b in blocks)
    assert max(len(b) for b in blocks) <= 4 and len(blocks) >= 4
    assert [len(b) for b in blocks[:3]] == [4, 3, 3]  # nearly equal within a stack
    assert plan_blocks([list(range(64))], workers=1) == [
        list(range(0, 16)),
        list(range(16, 32)),
        list(range(32, 48)),
        list(range(48, 64)),
    ]  # fmt: skip  (capped at 16 configs a block)
    assert plan_blocks([list(range(5))], workers=2, block_size=2) == [[0, 1], [2, 3], [4]]


def test_cluster_addresses_are_checked_and_logged_without_credentials():
    assert cluster_address("local:2") == "local:2"
    assert cluster_address("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    for bad in ("local:0", "local:x", "10.0.0.5:8786", "tcp://host", "tcp://:8786"):
        with pytest.raises(ValueError, match="neither local:N nor a scheduler address"):
            cluster_address(bad)
    shown = ClusterRun("tls://alice:s3cret@sched.example:8786").shown  # the project's redaction
    assert shown == "tls://***@sched.example:8786"
    assert ClusterRun("tcp://127.0.0.1:8786").shown == "tcp://127.0.0.1:8786"


SMALL = ("data.image_shape=[8,8]", "optimizer.batch_size=32", "optimizer.epochs=4")
GRID = [
    ("optimizer.lr=0.05", "model.l2=0"),
    ("optimizer.lr=0.5", "model.l2=0.002"),
    ("optimizer.lr=0.2", "optimizer.momentum=0.5"),
    ("optimizer.lr=1000000.0",),  # diverges: FAILED, the others go on
    ("optimizer.lr=0.1", "model.l2=0.001"),
]


@pytest.fixture(scope="module")
def small_sweep(digits) -> tuple[SweepPlan, SweepData]:
    train, val, scaler = digits
    cfgs = [
        config_from_container(compose(REPO / "params", [*SMALL, "evaluation.bootstrap_samples=20",
                                                        *overrides]))
        for overrides in GRID
    ]  # fmt: skip
    return SweepPlan(GRID, cfgs), SweepData(
        PreparedData(train, val, val, scaler), {"size": {"train": 1400}}
    )


def test_local_cluster_results_equal_the_one_process_sweep(small_sweep):
    plan, data = small_sweep
    here = dict(run_in_process(plan, data))
    runner = ClusterRun("local:2", block_size=2)
    there = list(runner.run(plan, data))
    assert sorted(k for k, _ in there) == list(range(len(GRID)))  # each config once
    assert runner.workers and all(w.startswith("tcp://127.0.0.1:") for w in runner.workers)
    assert runner.shipped_bytes == data.nbytes > 1400 * 64
    for k, outcome in there:
        assert outcome.name == " ".join(GRID[k]) and outcome.error == here[k].error
        assert outcome.metrics.keys() == here[k].metrics.keys()
        for key, value in here[k].metrics.items():
            if any(word in key for word in ("seconds", "peak_rss", "stacked_configs")):
                continue  # how long, how much memory, how many side by side: not the result
            assert outcome.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        curves = [
            c.drop(columns="seconds", errors="ignore") for c in (outcome.curves, here[k].curves)
        ]
        pd.testing.assert_frame_equal(*curves, rtol=1e-6)
    assert "diverged" in dict(there)[3].error and dict(there)[3].metrics == {}


def test_unreachable_scheduler_is_one_error_naming_it(small_sweep):
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError, match=f"Dask scheduler {address} unreachable"):
        list(ClusterRun(address, connect_timeout_s=1).run(*small_sweep))


# --- end to end: scripts/cluster, a real scheduler, two workers, the sweep command ----------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """scripts/cluster start with two workers on free ports; always stopped afterwards."""
    env = stage_env(
        DASK_SCHEDULER_PORT=str(free_port()),
        DASK_WORKERS="2",
        CLUSTER_DIR=str(tmp_path_factory.mktemp("cluster")),
    )
    try:
        address = run([str(SCRIPT), "start"], REPO, env, timeout=120).stdout.strip()
        yield address, env
    finally:
        subprocess.run([str(SCRIPT), "stop"], cwd=REPO, env=env, capture_output=True, timeout=60)


def _mlflow(path: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{path / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist-softmax")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def _sweep_until(cmd: list[str], cwd: Path, env: dict[str, str], line: str, log: Path):
    """Start the sweep; return (process, log text) once ``line`` shows in its stderr."""
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 180
    while line not in log.read_text():
        assert proc.poll() is None, f"the sweep ended before '{line}':\n{log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return proc


@pytest.mark.slow
def test_sweep_on_a_real_cluster_survives_a_lost_worker_and_fails_cleanly_without_scheduler(
    cluster, tmp_path, file_mirror
):
    address, cluster_env = cluster
    env = stage_env(file_mirror)
    path = copy_project(tmp_path / "project", env, epochs=2)
    sweep = ["mnist-softmax", "sweep", "--cluster", address, *GRID16]

    # 1. the 16-config grid: 16 FINISHED child runs, both workers used
    proc = run([*sweep], path, env)
    assert "16 configs in 4 blocks on 2 workers" in proc.stderr
    _, runs = _mlflow(path)
    (parent,) = [r for r in runs if r.info.run_name == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 16
    assert len({r.info.run_name for r in children}) == 16
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep.cluster"] == address and parent.data.tags["sweep.workers"] == "2"
    assert children[0].data.tags["sweep.reproduce"].startswith("dvc exp run -S optimizer.lr=")

    # (equal to the one-process sweep's metrics: test_local_cluster_results_equal_...)

    # 2. a worker killed (its process group, nanny included) mid-sweep: the sweep finishes,
    # every config logged once
    pids = sorted(Path(cluster_env["CLUSTER_DIR"]).glob("worker-*.pid"))
    proc = _sweep_until([*sweep, "--block-size", "2"], path, env, "block 1/8", tmp_path / "k.log")
    os.killpg(int(pids[0].read_text()), signal.SIGKILL)
    assert proc.wait(timeout=300) == 0, (tmp_path / "k.log").read_text()
    _, runs = _mlflow(path)
    last = max((r for r in runs if r.info.run_name == "sweep"), key=lambda r: r.info.start_time)
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == last.info.run_id]
    assert len(kids) == 16 and len({r.info.run_name for r in kids}) == 16
    assert {r.info.status for r in kids} == {"FINISHED"} and last.info.status == "FINISHED"
    assert "block 8/8" in (tmp_path / "k.log").read_text()

    # 3. the scheduler gone mid-sweep: one line naming it, exit 5, the parent FAILED, what
    # finished before is logged once
    proc = _sweep_until([*sweep, "--block-size", "2"], path, env, "block 1/8", tmp_path / "s.log")
    os.killpg(int((Path(cluster_env["CLUSTER_DIR"]) / "scheduler.pid").read_text()), 9)
    assert proc.wait(timeout=120) == 5
    text = (tmp_path / "s.log").read_text()
    assert f"lost the Dask scheduler {address} mid-sweep" in text and "Traceback" not in text
    _, runs = _mlflow(path)
    last = max((r for r in runs if r.info.run_name == "sweep"), key=lambda r: r.info.start_time)
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == last.info.run_id]
    assert last.info.status == "FAILED" and address in last.data.tags["error"]
    assert 2 <= len(kids) < 16 and len({r.info.run_name for r in kids}) == len(kids)

    # 4. no scheduler at all: the same, before any config ran
    env_fast = {**env, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    gone = run(sweep, path, env_fast, check=False)
    assert gone.returncode == 5 and f"Dask scheduler {address} unreachable" in gone.stderr
    assert "Traceback" not in gone.stderr
    _, runs = _mlflow(path)
    last = max((r for r in runs if r.info.run_name == "sweep"), key=lambda r: r.info.start_time)
    assert last.info.status == "FAILED" and "unreachable" in last.data.tags["error"]


def test_cluster_script_stops_everything_and_refuses_bad_settings(tmp_path):
    port = free_port()
    env = stage_env(DASK_SCHEDULER_PORT=str(port), DASK_WORKERS="1", CLUSTER_DIR=str(tmp_path))
    bad = run([str(SCRIPT), "start"], REPO, {**env, "DASK_WORKERS": "two"}, check=False)
    assert bad.returncode == 2 and "DASK_WORKERS must be a positive integer" in bad.stderr
    try:
        run([str(SCRIPT), "start"], REPO, env, timeout=120)
        status = run([str(SCRIPT), "status"], REPO, env)
        assert (
            f"running on tcp://127.0.0.1:{port}" in status.stdout and "1 workers" in status.stdout
        )
        pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
        assert len(pids) == 2
        busy = run([str(SCRIPT), "start"], REPO, {**env, "CLUSTER_DIR": str(tmp_path / "b")},
                   check=False)  # fmt: skip
        assert busy.returncode == 1 and f"port {port} on 127.0.0.1 already answers" in busy.stderr
    finally:
        run([str(SCRIPT), "stop"], REPO, env)
    for pid in pids:  # every process group gone, the port closed
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    assert run([str(SCRIPT), "status"], REPO, env, check=False).returncode == 3
    np.testing.assert_equal(list(tmp_path.glob("*.pid")), [])
