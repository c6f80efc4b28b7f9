"""The config view a stage gets: declared params readable, anything else a named error."""

from __future__ import annotations

import json

import pytest
from shipped import shipped_config

from mnist_softmax.config import SGDConfig
from mnist_softmax.scoped_config import AUDIT_ENV, ScopedConfig, UndeclaredParamError


def _view(*declared: str) -> ScopedConfig:
    return ScopedConfig(shipped_config(), declared, "train")


def test_declared_leaves_and_groups_are_readable_and_recorded():
    cfg = _view("seed", "optimizer", "data.class_names")
    assert cfg.seed == 0 and cfg.optimizer.lr == shipped_config().optimizer.lr
    assert cfg.data.class_names == shipped_config().data.class_names
    assert isinstance(cfg.optimizer, SGDConfig)  # library code may still dispatch on type
    assert cfg.paths.model == "models/model.npz"  # paths are deps/outs, always readable
    assert cfg._reads - {"paths.model"} == {"seed", "optimizer.lr", "data.class_names"}


@pytest.mark.parametrize(
    ("read", "named"),
    [("data.mirrors", "data.mirrors"), ("model.l2", "model"), ("tracking.uri", "tracking")],
)
def test_an_undeclared_key_stops_the_stage_with_its_name(read, named):
    """The first undeclared node on the way is named (a whole group when none of it is)."""
    cfg = _view("seed", "data.class_names")
    with pytest.raises(UndeclaredParamError, match=rf"stage train reads {named}, which is not"):
        node = cfg
        for part in read.split("."):
            node = getattr(node, part)


def test_hash_and_to_dict_are_limited_to_declared_keys():
    cfg = _view("seed", "data.class_names")
    assert cfg.hash("seed", "data.class_names") == shipped_config().hash("seed", "data.class_names")
    with pytest.raises(UndeclaredParamError):
        cfg.hash("model")
    assert set(cfg.to_dict()) == {"seed", "data", "paths"}
    assert set(cfg.to_dict()["data"]) == {"class_names"}


def test_audit_file_lists_the_keys_read(tmp_path, monkeypatch):
    monkeypatch.setenv(AUDIT_ENV, str(tmp_path))
    cfg = _view("seed", "model")
    _ = cfg.model.l2, cfg.paths.model
    cfg.write_audit()
    assert json.loads((tmp_path / "train.json").read_text()) == ["model.l2"]
