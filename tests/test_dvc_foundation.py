"""The real `dvc` on a fresh git repo: cold run, no-op rerun, params change, `dvc exp run -S`."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from conftest import run

pytestmark = pytest.mark.slow

EXPECTED_RAW = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_repro_noop_and_params_change(project):
    path, env = project
    cold = run(["dvc", "repro", "preprocess"], path, env)
    assert ran_stages(cold.stdout) == ["compose", "fetch", "ingest", "preprocess"]
    for name, digest in EXPECTED_RAW.items():
        assert hashlib.sha256((path / "data/raw" / name).read_bytes()).hexdigest() == digest
    report = json.loads((path / "reports/data.json").read_text())
    assert report["size"] == {"test": 10000, "train": 55000, "val": 5000}

    noop = run(["dvc", "repro", "preprocess"], path, env)
    assert ran_stages(noop.stdout) == []

    data_yaml = path / "params/data/mnist.yaml"
    data_yaml.write_text(data_yaml.read_text().replace("val_size: 5000", "val_size: 4000"))
    changed = run(["dvc", "repro", "preprocess"], path, env)
    assert ran_stages(changed.stdout) == ["compose", "preprocess"]
    assert yaml.safe_load((path / "params.yaml").read_text())["data"]["val_size"] == 4000
    report = json.loads((path / "reports/data.json").read_text())
    assert report["size"]["val"] == 4000


def test_exp_run_with_set_param(project):
    path, env = project
    run(["dvc", "repro", "preprocess"], path, env)
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "baseline"], path, env)
    exp = run(["dvc", "exp", "run", "preprocess", "-S", "data.val_size=3000"], path, env)
    assert "fetch" not in ran_stages(exp.stdout)
    assert yaml.safe_load((path / "params.yaml").read_text())["data"]["val_size"] == 3000
    assert json.loads((path / "reports/data.json").read_text())["size"]["val"] == 3000
