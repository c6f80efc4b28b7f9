"""The whole pipeline under the real `dvc`, logging to a real MLflow sqlite store.

One project per module: a cold `dvc repro`, then the reruns a data scientist does (no-op,
optimizer change, calibration change, `dvc exp run -S`, a queued sweep), each checked by which
stages ran and by what reached MLflow.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml
from conftest import make_project, run
from test_dvc_foundation import ran_stages

pytestmark = pytest.mark.slow

ALL_STAGES = ["compose", "fetch", "preprocess", "train", "calibrate", "evaluate", "log"]


def mlflow_runs(path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{path / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mnist-softmax")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def set_param(path, relative: str, key: str, value: object) -> None:
    """Change one top-level key of a params/ file in place, keeping its comment."""
    file = path / "params" / relative
    text, count = re.subn(rf"(?m)^{key}: *[^ #]+", f"{key}: {value}", file.read_text())
    assert count == 1, f"{key} not in {relative}"
    file.write_text(text)


def composed(path) -> dict:
    return yaml.safe_load((path / "params.yaml").read_text())


@pytest.fixture(scope="module")
def repro(tmp_path_factory, shared_mnist):
    """A project after one cold `dvc repro`: (path, env, stdout of the cold run)."""
    path, env = make_project(tmp_path_factory.mktemp("e2e"), shared_mnist.as_uri())
    started = time.perf_counter()
    cold = run(["dvc", "repro"], path, env)
    print(f"cold dvc repro: {time.perf_counter() - started:.1f} s")
    return path, env, cold.stdout


def test_cold_repro_runs_every_stage_and_logs_one_run(repro):
    path, _, stdout = repro
    assert ran_stages(stdout) == ALL_STAGES
    metrics = json.loads((path / "reports/metrics.json").read_text())
    assert metrics["test"]["acc"] > 0.92
    for png in ("reliability", "confusion", "curves", "weights", "mistakes"):
        assert (path / "reports/figures" / f"{png}.png").stat().st_size > 1000
    runs = mlflow_runs(path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["test/acc"] == pytest.approx(metrics["test"]["acc"])
    assert runs[0].data.params["optimizer.lr"] == str(composed(path)["optimizer"]["lr"])


def test_noop_repro_runs_nothing(repro):
    path, env, _ = repro
    started = time.perf_counter()
    noop = run(["dvc", "repro"], path, env)
    print(f"no-op dvc repro: {time.perf_counter() - started:.1f} s")
    assert ran_stages(noop.stdout) == []
    assert len(mlflow_runs(path)) == 1


def test_optimizer_change_reruns_train_and_after_only(repro):
    path, env, _ = repro
    lr = composed(path)["optimizer"]["lr"]
    set_param(path, "optimizer/sgd.yaml", "lr", lr / 2)
    out = run(["dvc", "repro"], path, env)
    assert ran_stages(out.stdout) == ["compose", "train", "calibrate", "evaluate", "log"]
    first, second = mlflow_runs(path)[-2:]
    assert first.data.params["optimizer.lr"] == str(lr)
    assert second.data.params["optimizer.lr"] == str(lr / 2)
    assert first.data.metrics["val/nll"] != second.data.metrics["val/nll"]


def test_calibration_change_never_retrains(repro):
    path, env, _ = repro
    set_param(path, "calibration/temperature.yaml", "t_max", 10.0)
    out = run(["dvc", "repro"], path, env)
    assert ran_stages(out.stdout) == ["compose", "calibrate", "evaluate", "log"]


def test_exp_run_switches_optimizer(repro):
    path, env, _ = repro
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "tuned"], path, env)
    cmd = ["dvc", "exp", "run", "-S", "optimizer=lbfgs", "-S", "optimizer.max_iter=30"]
    out = run(cmd, path, env)
    assert "fetch" not in ran_stages(out.stdout) and "train" in ran_stages(out.stdout)
    assert json.loads((path / "reports/train.json").read_text())["optimizer"] == "lbfgs"
    assert yaml.safe_load((path / "params.yaml").read_text())["optimizer"]["name"] == "lbfgs"
    last = mlflow_runs(path)[-1]
    assert last.data.params["optimizer.name"] == "lbfgs"
    assert last.data.tags["dvc.exp_name"]


def test_queued_sweep_logs_one_run_per_experiment(repro):
    path, env, _ = repro
    before = len(mlflow_runs(path))
    for lr in ("0.02", "0.2"):
        run(["dvc", "exp", "run", "--queue", "-S", f"optimizer.lr={lr}"], path, env)
    run(["dvc", "queue", "start", "-j", "2"], path, env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], path, env).stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(2)
    assert "Failed" not in status, status
    runs = mlflow_runs(path)[before:]
    assert sorted(r.data.params["optimizer.lr"] for r in runs) == ["0.02", "0.2"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["registered_model_version"] for r in runs}) == 2
