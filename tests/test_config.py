"""Every shipped config composes and validates; every bad value is one clear ConfigError."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from mnist_softmax.config import (
    compose,
    config_from_container,
    load_config,
)
from mnist_softmax.errors import ConfigError

PARAMS = REPO / "params"
GROUP_OPTIONS = [
    f"{group.name}={option.stem}"
    for group in sorted(PARAMS.iterdir())
    if group.is_dir()
    for option in sorted(group.glob("*.yaml"))
]


@pytest.mark.parametrize("override", GROUP_OPTIONS)
def test_every_shipped_config_composes_and_validates(override):
    cfg = config_from_container(compose(PARAMS, [override]))
    assert cfg.data.class_names


def test_committed_params_yaml_matches_params_tree():
    """params.yaml is generated: it must equal what params/ composes to (`dvc repro compose`)."""
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == yaml.safe_load(
        __import__("omegaconf").OmegaConf.to_yaml(compose(PARAMS), resolve=True)
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 (allowed: float > 0)"),
        ("optimizer.lr=fast", "optimizer.lr='fast'"),
        ("optimizer.momentum=1.0", "optimizer.momentum=1.0 (allowed: 0 <= momentum < 1)"),
        ("optimizer.batch_size=0", "optimizer.batch_size=0"),
        ("optimizer.schedule=linear", "optimizer.schedule='linear' (allowed: constant | step"),
        ("+optimizer.beta=0.9", "unknown key optimizer.beta"),
        ("+data.colour=red", "unknown key data.colour"),
        ("data.val_size=0", "data.val_size=0"),
        ("data.scaling=minmax", "data.scaling='minmax'"),
        ("model.dtype=float16", "model.dtype='float16'"),
        ("model.l2=-1", "model.l2=-1"),
        ("model.output=argmax", "model.output='argmax' (allowed: softmax | sparsemax)"),
        ("calibration.t_min=0", "calibration.t_min=0"),
        ("calibration.t_max=0.01", "calibration.t_max=0.01 (allowed: float > t_min)"),
        ("evaluation.n_bins=0", "evaluation.n_bins=0"),
        ("evaluation.binning=log", "evaluation.binning='log'"),
        ("data.files.train_labels.sha256=abc", "64 hex digits"),
        ("optimizer=adam", "Could not find 'optimizer/adam'"),
        ("retrain.lower_is_better=[test/brier]", "retrain.lower_is_better='test/brier'"),
        ("conformal.alpha=0", "conformal.alpha=0.0 (allowed: 0 < alpha < 1)"),
        ("conformal.alpha=1.5", "conformal.alpha=1.5"),
        ("conformal.method=topk", "conformal.method='topk' (allowed: lac | aps | raps)"),
        ("conformal.mondrian=maybe", "conformal.mondrian='maybe'"),
        ("conformal.lam=-0.1", "conformal.lam=-0.1 (allowed: float >= 0)"),
        ("conformal.k_reg=-1", "conformal.k_reg=-1"),
        ("conformal.holdout=1.0", "conformal.holdout=1.0 (allowed: 0 < share < 1)"),
        ("data.class_names=[a,b,a]", "(allowed: distinct names)"),
        ("data.class_names=[a,' ']", "(allowed: non-blank printable text"),
        ("data.class_names=[a,label]", "data.class_names=['label'] (allowed: names other than"),
    ],
)
def test_bad_values_name_key_value_and_allowed(override, message):
    with pytest.raises(ConfigError) as info:
        config_from_container(compose(PARAMS, [override]))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_params_yaml_says_how_to_make_it(tmp_path):
    with pytest.raises(ConfigError, match="dvc repro compose"):
        load_config(tmp_path / "params.yaml")


def test_invalid_yaml_is_a_config_error(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_hash_changes_with_the_group_only(cfg):
    other = config_from_container(compose(PARAMS, ["optimizer.lr=0.05"]))
    assert cfg.hash("optimizer") != other.hash("optimizer")
    assert cfg.hash("data") == other.hash("data")


def test_unknown_margin_metric_is_refused():
    """A mistyped margin name would silently mean a margin of 0."""
    from mnist_softmax.config import RetrainConfig

    with pytest.raises(ConfigError, match=r"retrain\.margins='test/ece_cal'"):
        RetrainConfig(higher_is_better=[], lower_is_better=[], margins={"test/ece_cal": 0.01})


@pytest.mark.parametrize(
    "removed", ["optimizer.lr", "model.l2", "data.val_size", "retrain.margins"]
)
def test_a_removed_key_is_an_error_naming_it_never_a_silent_default(removed):
    with pytest.raises(ConfigError, match=rf"{removed} is missing"):
        config_from_container(compose(REPO / "params", [f"~{removed}"]))


def test_the_schema_holds_no_values_params_is_the_only_source():
    """Every field of every group is MISSING in the schema: no second set of defaults to drift."""
    import dataclasses

    from omegaconf import MISSING

    from mnist_softmax import config

    schemas = [
        obj
        for obj in vars(config).values()
        if dataclasses.is_dataclass(obj) and obj.__module__ == config.__name__
    ]
    assert len(schemas) >= 10
    for schema in schemas:
        for field in dataclasses.fields(schema):
            assert field.default is MISSING, f"{schema.__name__}.{field.name} has a default"
            assert field.default_factory is dataclasses.MISSING, f"{schema.__name__}.{field.name}"
