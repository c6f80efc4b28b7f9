"""The compose stage under `dvc exp run`: a rejected override leaves no invalid params.yaml."""

from __future__ import annotations

import pytest
from conftest import run

from mnist_softmax.config import load_config

pytestmark = pytest.mark.slow


def test_failed_exp_run_leaves_a_valid_params_yaml(project):
    """Defect 8: `dvc exp run -S optimizer.lr=abc` used to leave lr: abc in params.yaml, so
    every later `retrain` exited 2 until someone ran `dvc repro`."""
    path, env = project
    committed = (path / "params.yaml").read_text()
    proc = run(["dvc", "exp", "run", "-S", "optimizer.lr=abc"], path, env, check=False)
    assert proc.returncode != 0
    assert "invalid config: optimizer.lr='abc'" in proc.stderr + proc.stdout
    load_config(path / "params.yaml")  # valid again
    assert (path / "params.yaml").read_text() == committed
