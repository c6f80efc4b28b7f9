"""The MLflow UI as a person reads it: experiment kind, descriptions, few metrics, tables."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pandas as pd
import pytest
from tracking_fixtures import EXPERIMENT, REGISTERED, write_fake_outputs

from mnist_softmax.tracking import model_card, run_record

pytestmark = pytest.mark.slow


def test_tables_are_wide_per_class_frames_with_names_as_cells(tmp_path):
    names = ["a/b", 'c,"d"']  # class names are text: slashes, commas, quotes
    per_class = {names[0]: {"recall": 0.9, "f1": 0.8}, names[1]: {"recall": 0.6, "f1": 0.7}}
    counts = {"train": {names[0]: 5, names[1]: 4}, "test": {names[0]: 2, names[1]: 1}}
    confusion = tmp_path / "confusion.csv"
    pairs = {"actual": [names[0], names[0], names[1]], "predicted": [names[0], names[1], names[1]]}
    pd.DataFrame(pairs).to_csv(confusion, index=False)
    out = model_card.tables(per_class, counts, confusion)
    assert out["per_class"].to_dict("list") == {
        "class": names, "f1": [0.8, 0.7], "recall": [0.9, 0.6]
    }  # fmt: skip
    assert out["class_counts"].to_dict("list") == {
        "class": names, "test": [2, 1], "train": [5, 4]
    }  # fmt: skip
    assert out["confusion"].to_dict("list") == {"actual": names, names[0]: [1, 0], names[1]: [1, 1]}


def test_experiment_runs_and_versions_carry_what_the_ui_shows(logged_runs, tracking_store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    cfg, logged, _ = logged_runs[0.1]
    run = client.get_run(logged.run_id)
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("test acc 0.9100, calibrated NLL 0.2810") and "exp-a" in note
    assert 20 <= len(run.data.metrics) <= 40  # 5 of them: test_sets/* (the prediction sets)
    assert run.data.metrics["test_sets/coverage"] == 0.95
    assert not [k for k in run.data.metrics if k.startswith(run_record.NOT_METRICS)]
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
