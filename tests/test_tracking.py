"""The log stage against a real MLflow sqlite store in tmp_path, fed with fake pipeline outputs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tracking_fixtures import EXPERIMENT, REGISTERED, REPO, write_fake_outputs

from mnist_softmax.config import TrackingConfig
from mnist_softmax.tracking import run_record
from mnist_softmax.tracking.store import DIRECT_TRANSFERS, Store, resolve_store


def test_flatten_params_dots_lists_and_long_values(tmp_path):
    cfg = write_fake_outputs(tmp_path, f"sqlite:///{tmp_path}/unused.db")
    flat = run_record.flatten_params(cfg)
    assert flat["optimizer.lr"] == "0.1"
    assert flat["data.val_size"] == "5000"
    assert flat["data.class_names"].startswith('["0", "1"')
    assert flat["data.files.train_images.sha256"] == cfg.data.files.train_images.sha256
    assert all(len(v) <= run_record.MAX_PARAM_CHARS for v in flat.values())
    assert run_record._truncate("x" * 600).endswith("...")


def test_flatten_metrics_nests_with_slash_and_prefixes_top_level():
    data = {"train_seconds": 1.5, "optimizer": "sgd", "at_bound": True, "val": {"acc": 0.9}}
    flat = run_record.flatten_metrics(data, "train/")
    assert flat == {"train/train_seconds": 1.5, "train/at_bound": True, "val/acc": 0.9}


def test_mlflow_values_rename_drop_and_turn_flags_into_tags():
    merged = {
        "test/acc": 0.9, "test/nll": 0.3, "test/support": 10.0, "temperature": 1.1,
        "calibration/temperature": 1.1, "calibration/at_bound": False, "val/acc": 0.8,
        "val/ece": 0.02, "val/sparsemax_loss": 0.1, "train/train_seconds": 2.0, "size/train": 5.0,
        "counts/test/a/b": 3.0,
        "per_class/a/b/f1": 0.5, "conformal/coverage": 0.95, "batch/week-1/acc": 0.9,
    }  # fmt: skip
    metrics, tags = run_record.mlflow_values(merged, "softmax")
    assert metrics == {
        "test/acc": 0.9, "test_detail/nll": 0.3, "temperature": 1.1, "val/ece": 0.02,
        "train/train_seconds": 2.0, "test_sets/coverage": 0.95, "test_batches/week-1/acc": 0.9,
    }  # fmt: skip
    assert tags == {"calibration.at_bound": "false"}
    sparse, _ = run_record.mlflow_values(merged, "sparsemax")
    assert sparse["test_detail/support"] == 10.0
    # MLflow orders chart sections by name: the headline's section must come first
    sections = {name.split("/")[0] for name in metrics if "/" in name}
    assert min(sections) == "test" == run_record.HEADLINE[0].split("/")[0]
    assert run_record.curve_name("lr") == "train/lr" and run_record.curve_name("val/nll") == (
        "val/nll"
    )


def test_resolve_store_env_wins_then_config_then_dvc_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    default = resolve_store(TrackingConfig(uri=None, experiment_name="e", registered_model="m"))
    assert default.uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert default.artifact_location == str(tmp_path / "mlflow" / "artifacts")
    assert (
        resolve_store(
            TrackingConfig(uri="http://h:5000", experiment_name="e", registered_model="m")
        ).uri
        == "http://h:5000"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:1")
    store = resolve_store(
        TrackingConfig(uri="http://h:5000", experiment_name="e", registered_model="m")
    )
    assert store == Store("http://env:1", None)


def test_a_tracking_server_proxies_artifact_transfers_unless_told_otherwise(monkeypatch):
    names = ("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD")
    assert names == DIRECT_TRANSFERS
    for name in names:
        monkeypatch.setenv(name, "")  # restored (unset) after the test
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5050")
    config = TrackingConfig(uri=None, experiment_name="e", registered_model="m")
    resolve_store(config)
    assert [os.environ[name] for name in names] == ["false", "false"]
    monkeypatch.setenv(names[0], "true")  # a client that reaches the object store may opt in
    resolve_store(config)
    assert os.environ[names[0]] == "true"


@pytest.mark.slow
def test_logged_run_has_params_metrics_curves_artifacts_tags_input_and_version(logged_runs):
    from mlflow.tracking import MlflowClient

    cfg, logged, _ = logged_runs[0.1]
    client = MlflowClient(cfg.tracking.uri)
    run = client.get_run(logged.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.lr"] == "0.1"
    assert run.data.params["optimizer.name"] == "sgd"
    metrics = run.data.metrics
    assert metrics["test/acc"] == pytest.approx(0.91)
    assert {"test/nll_calibrated", "val/nll", "train/train_seconds", "temperature"} <= set(metrics)
    assert "test_detail/support" not in metrics  # sparsemax-only, and this is a softmax run
    assert run.data.tags["calibration.at_bound"] == "false"
    assert not [k for k in metrics if k.startswith(("calibration/", "curve/", "size/"))]
    history = client.get_metric_history(logged.run_id, "val/nll")
    assert sorted(m.step for m in history) == [1, 2, 3]
    names = {a.path for a in client.list_artifacts(logged.run_id, "reports/figures")}
    assert "reports/figures/reliability.png" in names
    top = {a.path for a in client.list_artifacts(logged.run_id)}
    assert {"reports", "pipeline", "environment"} <= top
    freeze = client.download_artifacts(logged.run_id, "environment/pip-freeze.txt")
    lines = Path(freeze).read_text().splitlines()
    assert any(line.startswith("numpy==") for line in lines)
    assert lines == sorted(lines, key=str.lower)
    pipeline = {a.path for a in client.list_artifacts(logged.run_id, "pipeline")}
    assert {"pipeline/params.yaml", "pipeline/dvc.lock"} <= pipeline
    tags = run.data.tags
    assert tags["dvc.exp_name"] == "exp-a"
    assert run.info.run_name == "optimizer.epochs=3 optimizer.lr=0.1"  # what differs in params/
    assert len(tags["env.freeze_sha256"]) == 64
    assert tags["dvc.train.models/model.npz"] == "a" * 32
    assert tags["data.sha256.train_images"] == cfg.data.files.train_images.sha256
    assert {"git.commit", "git.dirty", "mnist_softmax.pid", "mnist_softmax.host"} <= set(tags)
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "mnist"
    assert dataset_input.dataset.digest == run_record.data_digest(cfg)
    sizes = {tag.key: tag.value for tag in dataset_input.tags}
    assert sizes["train"] == "11500" and sizes["test"] == "980"
    version = client.get_model_version(REGISTERED, logged.model_version)
    assert version.run_id == logged.run_id
    assert float(version.tags["test/acc"]) == pytest.approx(0.91)
    assert tags["registered_model_version"] == logged.model_version
    assert Path(cfg.tracking.uri.removeprefix("sqlite:///")).parent.joinpath("artifacts").is_dir()


@pytest.mark.slow
def test_two_learning_rates_give_two_runs_with_their_params_and_metrics(logged_runs):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(logged_runs[0.1][0].tracking.uri)
    runs = {lr: client.get_run(logged.run_id) for lr, (_, logged, _) in logged_runs.items()}
    assert runs[0.1].info.run_id != runs[0.05].info.run_id
    assert runs[0.05].data.params["optimizer.lr"] == "0.05"
    assert runs[0.1].data.metrics["test/acc"] != runs[0.05].data.metrics["test/acc"]
    versions = {logged.model_version for _, logged, _ in logged_runs.values()}
    assert len(versions) == 2


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["exception", "sigterm"])
def test_failure_inside_the_stage_marks_the_run_failed(
    failure, tmp_path, tracking_store, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from mnist_softmax.tracking import run_logging as tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = write_fake_outputs(tmp_path, tracking_store, lr=0.2)

    def broken(cfg, metrics):
        if failure == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        raise RuntimeError("simulated failure after the run started")

    monkeypatch.setattr(tracking, "_log_model", broken)
    monkeypatch.setenv("DVC_EXP_NAME", f"fail-{failure}")
    expected = tracking.RunTerminatedError if failure == "sigterm" else RuntimeError
    with contextlib.chdir(tmp_path), pytest.raises(expected):
        tracking.log_pipeline_run(cfg)
    assert signal.getsignal(signal.SIGTERM) is not None  # handler restored
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs(
        [experiment.experiment_id], f"tags.`dvc.exp_name` = 'fail-{failure}'"
    )
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_end_stale_runs_kills_old_and_orphaned_runs_only(tracking_store, monkeypatch):
    from mlflow.tracking import MlflowClient

    from mnist_softmax.tracking.run_logging import TAG_HOST, TAG_PID, end_stale_runs, ensure_store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking = TrackingConfig(uri=tracking_store, experiment_name="stale-runs")
    experiment_id = ensure_store(tracking)
    client = MlflowClient(tracking_store)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    now = int(time.time() * 1000)
    old = client.create_run(experiment_id, start_time=now - 7_200_000).info.run_id
    orphan = client.create_run(
        experiment_id, start_time=now, tags={TAG_PID: str(dead.pid), TAG_HOST: host}
    ).info.run_id
    alive = client.create_run(
        experiment_id, start_time=now, tags={TAG_PID: str(os.getpid()), TAG_HOST: host}
    ).info.run_id
    ended = end_stale_runs(3600, tracking)
    assert sorted(ended) == sorted([old, orphan])
    assert client.get_run(old).info.status == "KILLED"
    assert client.get_run(orphan).info.status == "KILLED"
    assert client.get_run(alive).info.status == "RUNNING"


def test_installed_mlflow_is_imported_from_the_repo_root():
    """A folder named mlflow/ at the repo root (the store) must never shadow the package."""
    code = "import importlib.util; print(importlib.util.find_spec('mlflow').origin)"
    origin = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert "site-packages" in Path(origin).parts
    assert not (REPO / "mlflow" / "__init__.py").exists()


def test_dvc_lock_tags_name_each_stage_output(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text("stages:\n  train:\n    outs:\n    - path: models/model.npz\n      md5: abc\n")
    assert run_record.dvc_lock_tags(lock) == {"dvc.train.models/model.npz": "abc"}
    assert run_record.dvc_lock_tags(tmp_path / "missing.lock") == {}


def test_git_tags_ignore_the_files_every_dvc_experiment_rewrites(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)  # fmt: skip

    git("init", "-q")
    for name in ("params.yaml", "dvc.lock", "code.py"):
        (tmp_path / name).write_text("a\n")
    git("add", "-A")
    git("commit", "-qm", "base")
    (tmp_path / "params.yaml").write_text("b\n")  # what `dvc exp run -S` does
    (tmp_path / "dvc.lock").write_text("b\n")
    tags = run_record.git_tags(tmp_path)
    assert len(tags["git.commit"]) == 40 and tags["git.dirty"] == "false"
    (tmp_path / "code.py").write_text("b\n")
    assert run_record.git_tags(tmp_path)["git.dirty"] == "true"


def test_a_missing_metrics_file_is_one_clear_data_error(tmp_path):
    from mnist_softmax.errors import DataError

    cfg = write_fake_outputs(tmp_path, f"sqlite:///{tmp_path}/unused.db")
    (tmp_path / cfg.paths.eval_metrics).unlink()
    with contextlib.chdir(tmp_path), pytest.raises(DataError, match=r"metrics\.json not found"):
        run_record.read_final_metrics(cfg.paths)
