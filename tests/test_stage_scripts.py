"""Stage scripts as DVC runs them: one clear error line, a distinct exit code, no partial output."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import OFFLINE_MIRROR, REPO, read_only, run, stage_env

from mnist_softmax.atomic import load_npz, save_npz

REAL_MIRRORS = """  - https://ossci-datasets.s3.amazonaws.com/mnist
  - https://storage.googleapis.com/cvdf-datasets/mnist
  - http://yann.lecun.com/exdb/mnist
"""


def offline_params(text: str) -> str:
    """Replace the real https mirrors of params.yaml: only $DATA_MIRROR can serve the data."""
    assert REAL_MIRRORS in text
    return text.replace(REAL_MIRRORS, f"  - {OFFLINE_MIRROR}\n")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "params", tmp_path / "params")
    (tmp_path / "params.yaml").write_text(offline_params((REPO / "params.yaml").read_text()))
    shutil.copy2(REPO / "dvc.yaml", tmp_path / "dvc.yaml")  # the stages' outputs, for preflight
    return tmp_path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_mnist) -> Path:
    """A folder after fetch + preprocess (module-wide: it costs seconds); copy it, do not edit."""
    root = tmp_path_factory.mktemp("prepared")
    (root / "params.yaml").write_text(offline_params((REPO / "params.yaml").read_text()))
    shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
    env = stage_env(shared_mnist.as_uri())
    for name in ("fetch", "preprocess"):
        assert stage(name, root, env).returncode == 0
    return root


@pytest.fixture
def trained(prepared, tmp_path) -> Path:
    """A copy of ``prepared`` with a model trained (params shrunk to 2 epochs)."""
    work = tmp_path / "trained"
    shutil.copytree(prepared, work, ignore=shutil.ignore_patterns("raw"))
    params = work / "params.yaml"
    params.write_text(params.read_text().replace("epochs: 10", "epochs: 2", 1))
    proc = stage("train", work, stage_env())
    assert proc.returncode == 0, proc.stderr
    return work


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


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


def test_yaml_syntax_error_in_params_tree_is_one_line_exit_2(workdir):
    """Defect 6: a YAML syntax error in params/ (90 lines of traceback and exit 1 before)."""
    sgd = workdir / "params" / "optimizer" / "sgd.yaml"
    sgd.write_text(sgd.read_text() + "lr: [0.1\n")
    before = (workdir / "params.yaml").read_bytes()
    proc = stage("compose", workdir, stage_env())
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"[compose] error: {sgd}, line {len(sgd.read_text().splitlines()) + 1} is not valid "
        "YAML: expected ',' or ']', but got '<stream end>'; fix it and rerun"
    ]
    assert (workdir / "params.yaml").read_bytes() == before


def test_read_only_output_folder_fails_before_training(prepared, tmp_path):
    """Defect 6: a read-only models/ is reported at once, not after training, in one line."""
    work = tmp_path / "work"
    shutil.copytree(prepared, work, ignore=shutil.ignore_patterns("raw"))
    (work / "models").mkdir()
    with read_only(work / "models"):
        proc = stage("train", work, stage_env())
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        f"[train] error: cannot write models: {_denied()}: fix the folder's permissions"
    ]
    assert "epoch 1" not in proc.stderr  # no training time wasted
    assert list((work / "models").iterdir()) == []


def _denied() -> str:
    return "Operation not permitted (EPERM)" if os.geteuid() == 0 else "Permission denied (EACCES)"


def test_nan_in_the_inputs_is_a_data_error_naming_where(prepared, tmp_path):
    """Defect 7: NaN inputs were reported as divergence ("lower optimizer.lr")."""
    work = tmp_path / "work"
    shutil.copytree(prepared, work, ignore=shutil.ignore_patterns("raw"))
    train = work / "data" / "prepared" / "train.npz"
    arrays = load_npz(train)
    X = arrays["X"].astype(np.float32)
    X[12, 400] = np.nan
    X[30, 5] = np.inf
    save_npz(train, X=X, y=arrays["y"])
    proc = stage("train", work, stage_env())
    assert proc.returncode == 3
    assert error_lines(proc.stderr) == [
        f"[train] error: {Path('data/prepared/train.npz')} X: 2 NaN/inf value(s), the first at "
        "row 12, column 400: the input data is corrupt, not the learning rate; rerun "
        "`dvc repro -f preprocess`"
    ]
    assert not (work / "models" / "model.npz").exists()


def test_truncated_model_file_is_one_line_exit_3(trained):
    """Defect 6: a truncated model.npz raised BadZipFile with a traceback."""
    model = trained / "models" / "model.npz"
    model.write_bytes(model.read_bytes()[:5000])
    proc = stage("calibrate", trained, stage_env())
    assert proc.returncode == 3
    (line,) = error_lines(proc.stderr)
    assert line.startswith("[calibrate] error: models/model.npz is truncated or corrupt")
    assert "Traceback" not in proc.stderr


def test_pickled_split_is_refused_in_one_line(trained):
    val = trained / "data" / "prepared" / "val.npz"
    arrays = load_npz(val)
    np.savez(val, X=arrays["X"], y=np.array(list(arrays["y"]), dtype=object))  # a pickle
    proc = stage("calibrate", trained, stage_env())
    assert proc.returncode == 3
    (line,) = error_lines(proc.stderr)
    assert line.startswith("[calibrate] error: data/prepared/val.npz holds pickled objects")


def test_bad_conformal_value_exits_2_before_any_work(workdir):
    params = workdir / "params.yaml"
    params.write_text(params.read_text().replace("  alpha: 0.05\n", "  alpha: 1.2\n", 1))
    proc = stage("calibrate", workdir, stage_env())
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [
        "[calibrate] error: invalid config: conformal.alpha=1.2 (allowed: 0 < alpha < 1)"
    ]


def test_corrupt_conformal_file_stops_evaluate_in_one_line(trained):
    """A model must never be evaluated (or served) with a silently empty set."""
    assert stage("calibrate", trained, stage_env()).returncode == 0
    conformal = trained / "models" / "conformal.json"
    assert '"method": "lac"' in conformal.read_text()
    conformal.write_text(conformal.read_text()[:200])  # truncated
    proc = stage("evaluate", trained, stage_env())
    assert proc.returncode == 3
    (line,) = error_lines(proc.stderr)
    assert line.startswith("[evaluate] error: models/conformal.json is not a conformal predictor")
    assert not (trained / "reports" / "metrics.json").exists()
