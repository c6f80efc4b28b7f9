"""The fast sweep: grid expansion, what it refuses, and end to end on the real data, where the
printed ``dvc exp run`` command of a config reproduces the metrics of its MLflow child run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from conftest import REPO, copy_project, run

from mnist_softmax.config import compose, config_from_container
from mnist_softmax.errors import ConfigError
from mnist_softmax.sweeps.fast_sweep import compose_grid, expand_grid


def test_grid_is_the_cartesian_product_dvc_forms():
    grid = expand_grid(["optimizer.lr=0.1,0.2", "model.l2=0,1e-3", "seed=1"])
    assert grid == [
        ("optimizer.lr=0.1", "model.l2=0", "seed=1"),
        ("optimizer.lr=0.1", "model.l2=0.001", "seed=1"),
        ("optimizer.lr=0.2", "model.l2=0", "seed=1"),
        ("optimizer.lr=0.2", "model.l2=0.001", "seed=1"),
    ]
    with pytest.raises(ConfigError, match="invalid override"):
        expand_grid(["optimizer.lr=[0.1"])


def test_configs_the_fast_path_cannot_share_are_refused(monkeypatch):
    monkeypatch.chdir(REPO)  # compose_grid composes params/ as `dvc exp run -S` does
    base = config_from_container(compose(REPO / "params"))
    cfgs = compose_grid([("optimizer.lr=0.1",), ("seed=3", "optimizer.momentum=0.5")], base)
    assert [c.optimizer.lr for c in cfgs] == [0.1, base.optimizer.lr] and cfgs[1].seed == 3
    with pytest.raises(ConfigError, match=r"data.val_size=100 changes data\.\*.*use --queue"):
        compose_grid([("data.val_size=100",)], base)
    with pytest.raises(ConfigError, match=r"only SGD configs.*optimizer=lbfgs"):
        compose_grid([("optimizer=lbfgs",)], base)
    with pytest.raises(ConfigError, match=r"optimizer.lr=-1.0 \(allowed: float > 0\)"):
        compose_grid([("optimizer.lr=-1",)], base)


def _store(path: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{path / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist-softmax")
    return client, ([] if experiment is None else client.search_runs([experiment.experiment_id]))


@pytest.mark.slow
def test_fast_sweep_logs_ranks_and_its_commands_reproduce(tmp_path, file_mirror):
    env = {**__import__("conftest").stage_env(file_mirror)}
    path = copy_project(tmp_path / "project", env, epochs=2)

    # a bad grid: one line, exit 2, nothing logged
    bad = run(["mnist-softmax", "sweep", "-S", "data.val_size=1000,2000"], path, env, check=False)
    assert bad.returncode == 2 and "changes data.*" in bad.stderr and "Traceback" not in bad.stderr
    assert _store(path)[1] == []

    grid = ["-S", "model=softmax,sparsemax", "-S", "optimizer.lr=0.5,1e6"]  # lr=1e6 diverges
    proc = run(["mnist-softmax", "sweep", "-j", "1", *grid], path, env, check=False)
    assert proc.returncode == 1, proc.stderr  # two configs failed, the others are logged
    assert proc.stderr.count("FAILED: training diverged") == 2
    lines = proc.stdout.splitlines()
    rows = [line.split() for line in lines[1:5]]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    assert [row[-2] for row in rows] == ["ok", "ok", "FAILED", "FAILED"]
    accuracy = [float(rows[0][3]), float(rows[1][3])]  # rank config(2 words) test/acc ...
    assert accuracy == sorted(accuracy, reverse=True)
    commands = [line.split(None, 1)[1] for line in lines if line.strip().startswith(("1 ", "2 "))]
    commands = [c for c in commands if c.startswith("dvc exp run")]
    assert len(commands) == 2

    client, runs = _store(path)
    parents = [r for r in runs if r.data.tags.get("mnist_softmax.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mnist_softmax.sweep") == "child"]
    assert len(parents) == 1 and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(r.info.status for r in children) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert {r.info.run_name for r in children} == {  # what each changes in params/
        "sweep: default", "sweep: model=sparsemax", "sweep: optimizer.lr=1000000.0",
        "sweep: model=sparsemax optimizer.lr=1000000.0",
    }  # fmt: skip
    ok = {r.data.tags["sweep.reproduce"]: r for r in children if r.info.status == "FINISHED"}
    assert sorted(ok) == sorted(commands)
    best = ok[commands[0]]
    assert best.data.params["optimizer.lr"] == "0.5" and "data.val_size" in best.data.params
    assert best.data.tags["git.commit"] != "unknown" and best.data.tags["env.freeze_sha256"]
    assert "dvc.preprocess.data/prepared" in best.data.tags

    # each printed command, run as a normal DVC experiment, writes the same metrics: the
    # softmax child and the sparsemax one (the same SGD engine trains a stack and a single run)
    for command in commands:
        child = ok[command]
        output = child.data.params["model.output"]
        loss = "nll" if output == "softmax" else "sparsemax_loss"
        curve = client.get_metric_history(child.info.run_id, f"val/{loss}")
        assert [m.step for m in curve] == [1, 2]
        run(shlex.split(command), path, env, timeout=600)
        _assert_same_metrics(child.data.metrics, path / "reports", loss)
    assert sorted(c.data.params["model.output"] for c in ok.values()) == ["softmax", "sparsemax"]


def _assert_same_metrics(logged: dict[str, float], reports: Path, loss: str) -> None:
    """The child run's metrics equal those the DVC experiment wrote (timings aside), under the
    names a pipeline run logs them."""
    from mnist_softmax.tracking.run_record import merge_final_metrics, mlflow_values

    files = ("data.json", "train.json", "calibration.json", "metrics.json")
    merged = merge_final_metrics(*(json.loads((reports / f).read_text()) for f in files))
    written, _ = mlflow_values(merged, "sparsemax" if loss == "sparsemax_loss" else "softmax")
    timing = ("seconds", "peak_rss", "stacked_configs")
    shared = {k for k in logged.keys() & written.keys() if not any(t in k for t in timing)}
    must = {"test/acc", "test/ece_calibrated", "temperature", "train/best_epoch",
            "val/ece_calibrated", "test_detail/ece_ci_low", f"test_detail/{loss}"}  # fmt: skip
    assert must <= shared, must - shared
    for key in sorted(shared):
        assert logged[key] == pytest.approx(written[key], rel=1e-6, abs=1e-9), key
