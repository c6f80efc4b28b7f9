"""Class names are data: awkward names through every face of a real pipeline run.

One ``dvc repro`` (1 epoch) with names holding slashes, commas, quotes, colons, a dollar sign
and non-ASCII letters, then each place a person meets them: the reports and DVC plots, the
MLflow run (metric keys, tables, model card), ``mnist-softmax predict`` (CSV and JSON),
``mlflow models serve`` and the explorer's API.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_project, run
from test_serve import free_port

from mnist_softmax.commands.ui import stop_server, wait_ready
from mnist_softmax.config import load_config

pytestmark = pytest.mark.slow

NAMES = ["zero/0", "one, 1", 'two "2"', "three: 3", "vier ä", "五 five", "six/6:", 'seven, "7"',
         "eight", "nine $9"]  # fmt: skip
RAW_TEST = "data/raw/t10k-images-idx3-ubyte"


@pytest.fixture(scope="module")
def named_project(tmp_path_factory, shared_mnist) -> tuple[Path, dict[str, str]]:
    """A project whose ten classes carry awkward names, after one `dvc repro` (1 epoch)."""
    root, env = make_project(tmp_path_factory.mktemp("names"), shared_mnist.as_uri())
    config = root / "params/data/mnist.yaml"
    listed = json.dumps(NAMES, ensure_ascii=False)  # a JSON list is a YAML flow sequence
    text, count = re.subn(r"(?m)^class_names: .*$", f"class_names: {listed}", config.read_text())
    assert count == 1
    config.write_text(text)
    (root / "params/optimizer/sgd.yaml").write_text(
        (root / "params/optimizer/sgd.yaml").read_text().replace("epochs: 10", "epochs: 1")
    )
    run(["dvc", "repro"], root, env, timeout=900)
    return root, env


def test_reports_and_dvc_plots_carry_the_names_unchanged(named_project):
    root, env = named_project
    per_class = json.loads((root / "reports/per_class.json").read_text())["per_class"]
    assert sorted(per_class) == sorted(NAMES)  # the JSON reports sort their keys
    counts = json.loads((root / "reports/data.json").read_text())["counts"]
    assert sorted(counts["test"]) == sorted(NAMES)
    pairs = pd.read_csv(root / "reports/confusion.csv", dtype=str, keep_default_na=False)
    assert set(pairs["actual"]) == set(NAMES) and set(pairs["predicted"]) <= set(NAMES)
    shown = json.loads(run(["dvc", "plots", "show", "--json"], root, env).stdout)
    confusion = shown["data"]["confusion"][0]["content"]["data"]["values"]
    drawn = {row["actual"] for row in confusion}
    assert drawn == set(NAMES)


def test_mlflow_run_keys_are_safe_and_its_tables_hold_the_names(named_project):
    from mlflow.tracking import MlflowClient

    root, _ = named_project
    cfg = load_config(root / "params.yaml")
    client = MlflowClient(f"sqlite:///{root}/mlflow/mlflow.db")
    experiment = client.get_experiment_by_name(cfg.tracking.experiment_name)
    (run_,) = client.search_runs([experiment.experiment_id])
    assert run_.info.status == "FINISHED"
    assert run_.info.run_name == "default"  # the names were edited in params/ itself
    assert len(run_.data.metrics) <= 35
    assert not [k for k in run_.data.metrics if any(name in k for name in NAMES)]
    table_file = client.download_artifacts(run_.info.run_id, "tables/per_class.json")
    table = json.loads(Path(table_file).read_text())
    assert sorted(row[0] for row in table["data"]) == sorted(NAMES)
    version = client.get_model_version(cfg.tracking.registered_model, "1")
    assert version.run_id == run_.info.run_id


def _predict(root: Path, env: dict[str, str], fmt: str) -> str:
    cmd = [sys.executable, "-m", "mnist_softmax.cli", "predict", RAW_TEST, "--format", fmt]
    return run(cmd, root, env).stdout


def test_predict_csv_and_json_carry_the_names(named_project):
    root, env = named_project
    table = pd.read_csv(io.StringIO(_predict(root, env, "csv")), dtype={"label": str},
                        keep_default_na=False)  # fmt: skip
    assert len(table) == 10_000 and set(table["label"]) <= set(NAMES)
    assert [c for c in table.columns if c.startswith("p_")] == [f"p_{name}" for name in NAMES]
    top3 = json.loads(table["top3"].iloc[0])
    assert top3[0][0] == table["label"].iloc[0] and top3[0][0] in NAMES
    records = json.loads(_predict(root, env, "json"))
    assert list(records[0]["probabilities"]) == NAMES
    assert [r["label"] for r in records] == table["label"].tolist()
    assert records[0]["top3"][0]["label"] == records[0]["label"]
    # prediction sets: a JSON array in one CSV cell, a real array in JSON, the same sets
    sets = [json.loads(cell) for cell in table["set"]]
    assert all(set(s) <= set(NAMES) for s in sets) and any(len(s) > 1 for s in sets)
    assert [r["set"] for r in records] == sets


def test_served_model_and_explorer_answer_with_the_names(named_project):
    from mnist_softmax.commands.explore import load_digit_model
    from mnist_softmax.data.idx import parse_idx
    from mnist_softmax.explorer.app import create_app
    from mnist_softmax.tracking.model_source import load_model_source

    root, env = named_project
    cfg = load_config(root / "params.yaml")
    X = parse_idx((root / RAW_TEST).read_bytes(), RAW_TEST)[:5].reshape(5, 784)
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "--env-manager", "local",
           "-m", f"models:/{cfg.tracking.registered_model}/1", "-h", "127.0.0.1",
           "-p", str(port), "-w", "1"]  # fmt: skip
    served_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow/mlflow.db"}
    proc = subprocess.Popen(cmd, cwd=root, env=served_env, start_new_session=True)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", timeout_s=120)
        body = json.dumps({"inputs": X.tolist()}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            rows = pd.DataFrame(json.loads(response.read())["predictions"])
    finally:
        stop_server(proc)
    assert [c for c in rows.columns if c in NAMES] == NAMES
    np.testing.assert_allclose(rows[NAMES].sum(axis=1), 1.0, atol=1e-6)
    assert set(rows["label"]) <= set(NAMES)
    assert all(isinstance(s, list) and set(s) <= set(NAMES) for s in rows["set"])

    source = load_model_source(str(root / cfg.paths.model), cfg.tracking, cfg.paths)
    client = create_app(load_digit_model(source, root / cfg.paths.prepared_dir)).test_client()
    assert client.get("/api/model").get_json()["class_names"] == NAMES
    answer = client.post("/api/predict", json={"pixels": X[0].tolist()})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["label"] == rows["label"].iloc[0]
    assert answer.get_json()["set"] == rows["set"].iloc[0]
