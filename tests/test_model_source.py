"""Which model a command serves: champion > newest version > models/model.npz, or the one named.

Runs against the session's real MLflow store with the two versions ``logged_runs`` registered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tracking_fixtures import EXPERIMENT, REGISTERED

from mnist_softmax.config import TrackingConfig
from mnist_softmax.errors import DataError
from mnist_softmax.model.model_file import load_model
from mnist_softmax.tracking.model_source import load_model_source

pytestmark = pytest.mark.slow


@pytest.fixture
def registry(logged_runs, monkeypatch):
    """(tracking config, paths, {version: (model file, T)}) of the logged runs."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = logged_runs[0.1][0]
    versions = {}
    for run_cfg, logged, root in logged_runs.values():
        versions[logged.model_version] = (root / run_cfg.paths.model, 1.0 + run_cfg.optimizer.lr)
    return cfg.tracking, cfg.paths, versions


def _client(tracking: TrackingConfig):
    from mnist_softmax.tracking.registry import client_for

    return client_for(tracking)


def _same_model(source, path: Path, temperature: float) -> None:
    np.testing.assert_array_equal(source.model.W, load_model(path).W)
    assert source.temperature == pytest.approx(temperature)


def test_newest_version_without_a_champion_then_the_champion(registry):
    from mnist_softmax.tracking.registry import latest_version

    tracking, paths, versions = registry
    client = _client(tracking)
    newest = latest_version(client, REGISTERED)
    source = load_model_source(None, tracking, paths)
    assert source.source == f"models:/{REGISTERED}/{newest}"
    if newest in versions:
        _same_model(source, *versions[newest])
    oldest = min(versions, key=int)
    client.set_registered_model_alias(REGISTERED, "champion", oldest)
    try:
        champion = load_model_source(None, tracking, paths)
    finally:
        client.delete_registered_model_alias(REGISTERED, "champion")
    assert champion.source == f"models:/{REGISTERED}@champion"
    _same_model(champion, *versions[oldest])


def test_an_explicit_uri_and_a_bad_one(registry):
    tracking, paths, versions = registry
    version = max(versions, key=int)
    source = load_model_source(f"models:/{REGISTERED}/{version}", tracking, paths)
    _same_model(source, *versions[version])
    with pytest.raises(DataError, match=f"cannot load model models:/{REGISTERED}/999") as err:
        load_model_source(f"models:/{REGISTERED}/999", tracking, paths)
    assert "\n" not in str(err.value)


def test_without_a_store_the_workspace_file_and_no_store_is_created(registry, tmp_path):
    _, paths, versions = registry
    db = tmp_path / "mlflow" / "mlflow.db"
    tracking = TrackingConfig(
        uri=f"sqlite:///{db}", experiment_name=EXPERIMENT, registered_model=REGISTERED
    )
    model_file, _ = next(iter(versions.values()))
    (tmp_path / "models").mkdir()
    local = tmp_path / paths.model
    local.write_bytes(model_file.read_bytes())  # no calibration.json beside it: T = 1
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        source = load_model_source(None, tracking, paths)
        assert source.source == paths.model and source.temperature == 1.0
        local.unlink()
        with pytest.raises(DataError, match=r"models/model\.npz not found: run `make run` first"):
            load_model_source(None, tracking, paths)
    assert not db.exists()
