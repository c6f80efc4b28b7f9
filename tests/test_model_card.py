"""The MLflow UI as a person reads it: experiment kind, descriptions, few metrics, tables."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from tracking_fixtures import EXPERIMENT, REGISTERED, write_fake_outputs

from mnist_softmax.tracking import model_card, run_record

pytestmark = pytest.mark.slow


def test_split_metrics_sends_per_class_values_to_tables():
    merged = {"test/acc": 0.9, "counts/train/0": 5.0, "per_class/0/f1": 0.8, "temperature": 1.0}
    metrics, tables = run_record.split_metrics(merged)
    assert metrics == {"test/acc": 0.9, "temperature": 1.0}
    assert tables == {"counts/train/0": 5.0, "per_class/0/f1": 0.8}


def test_tables_are_wide_per_class_frames(tmp_path):
    values = {"per_class/0/f1": 0.8, "per_class/1/f1": 0.7, "per_class/0/recall": 0.9,
              "per_class/1/recall": 0.6, "counts/train/0": 5.0, "counts/test/0": 2.0,
              "counts/train/1": 4.0, "counts/test/1": 1.0}  # fmt: skip
    confusion = tmp_path / "confusion.csv"
    confusion.write_text("actual,predicted\n0,0\n0,1\n1,1\n")
    out = model_card.tables(values, confusion)
    assert out["per_class"].to_dict("list") == {
        "class": ["0", "1"], "f1": [0.8, 0.7], "recall": [0.9, 0.6]
    }  # fmt: skip
    assert out["class_counts"].to_dict("list") == {
        "class": ["0", "1"], "test": [2.0, 1.0], "train": [5.0, 4.0]
    }  # fmt: skip
    assert out["confusion"].to_dict("list") == {"actual": ["0", "1"], "0": [1, 0], "1": [1, 1]}


def test_experiment_runs_and_versions_carry_what_the_ui_shows(logged_runs, tracking_store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    cfg, logged, _ = logged_runs[0.1]
    run = client.get_run(logged.run_id)
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("test acc 0.9100, calibrated NLL 0.2810") and "exp-a" in note
    assert 20 <= len(run.data.metrics) <= 40  # 5 of them: conformal/* (the prediction sets)
    assert run.data.metrics["conformal/coverage"] == 0.95
    assert not [k for k in run.data.metrics if k.startswith(run_record.TABLE_PREFIXES)]
    tables = {a.path for a in client.list_artifacts(logged.run_id, "tables")}
    assert {"tables/per_class.json", "tables/confusion.json"} <= tables
    assert {"tables/set_coverage_class.json", "tables/set_coverage_size.json"} <= tables
    assert "champion" in client.get_registered_model(REGISTERED).description
    card = client.get_model_version(REGISTERED, logged.model_version).description
    assert "accuracy 0.9100" in card and "Temperature T = 1.1000" in card and "Limits" in card
    assert cfg.data.files.train_images.sha256[:16] in card


def test_register_false_logs_the_model_without_a_new_version(
    logged_runs, tracking_store, tmp_path, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from mnist_softmax.tracking.run_logging import log_pipeline_run

    client = MlflowClient(tracking_store)
    before = len(client.search_model_versions(f"name = '{REGISTERED}'"))
    cfg = write_fake_outputs(tmp_path, tracking_store, lr=0.2)
    cfg = replace(cfg, tracking=replace(cfg.tracking, register=False))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "sweep-member")
    with contextlib.chdir(tmp_path):
        logged = log_pipeline_run(cfg)
    assert logged.model_version == ""
    assert len(client.search_model_versions(f"name = '{REGISTERED}'")) == before
    run = client.get_run(logged.run_id)
    assert run.data.tags["registered_model_version"] == ""
    assert run.outputs.model_outputs  # the model is logged all the same
