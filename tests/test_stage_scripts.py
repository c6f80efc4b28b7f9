"""Stage scripts as DVC runs them: one clear error line, a distinct exit code, no partial output."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO, run, stage_env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "params", tmp_path / "params")
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def stage(name: str, cwd: Path, env: dict[str, str], *args: str):
    return run(
        [sys.executable, str(REPO / "pipeline" / f"{name}.py"), *args], cwd, env, check=False
    )


def test_missing_params_yaml_exits_2(tmp_path):
    proc = stage("fetch", tmp_path, stage_env())
    assert proc.returncode == 2
    assert "params.yaml not found" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_value_in_params_yaml_exits_2_before_any_work(workdir):
    params = workdir / "params.yaml"
    params.write_text(params.read_text().replace("val_size: 5000", "val_size: -5"))
    proc = stage("fetch", workdir, stage_env())
    assert proc.returncode == 2
    assert "data.val_size=-5" in proc.stderr
    assert not (workdir / "data").exists()


def test_compose_rejects_bad_override_and_keeps_params_yaml(workdir):
    before = (workdir / "params.yaml").read_bytes()
    proc = stage("compose", workdir, stage_env(), "optimizer.lr=0")
    assert proc.returncode == 2
    assert "optimizer.lr=0" in proc.stderr
    assert (workdir / "params.yaml").read_bytes() == before


def test_fetch_with_corrupt_mirror_exits_3_and_writes_nothing(workdir, shared_mnist):
    mirror = workdir / "mirror"
    mirror.mkdir()
    for gz in shared_mnist.glob("*.gz"):
        (mirror / gz.name).write_bytes(gz.read_bytes()[:1000])  # truncated everywhere
    params = workdir / "params.yaml"
    text = params.read_text().replace("retries: 3", "retries: 1")
    params.write_text(text)
    env = stage_env(mirror.as_uri())
    proc = stage("fetch", workdir, env)
    assert proc.returncode == 3
    assert "no mirror gave a valid file" in proc.stderr and "Traceback" not in proc.stderr
    raw = workdir / "data" / "raw"
    assert not raw.exists() or list(raw.iterdir()) == []


def test_fetch_then_preprocess(workdir, file_mirror):
    env = stage_env(file_mirror)
    assert stage("fetch", workdir, env).returncode == 0
    proc = stage("preprocess", workdir, env)
    assert proc.returncode == 0, proc.stderr
    assert "[preprocess] train: 55000 images" in proc.stderr
    names = sorted(p.name for p in (workdir / "data" / "prepared").iterdir())
    assert names == ["scaler.npz", "test.npz", "train.npz", "val.npz"]
