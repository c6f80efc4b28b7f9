"""Typed, range-checked configuration: the one module that touches Hydra and OmegaConf.

Hydra composes ``params/`` into ``params.yaml``; every stage then loads ``params.yaml`` through
:func:`load_config`, which checks each group against the frozen dataclasses below. A wrong type,
an unknown key or an out-of-range value becomes one :class:`ConfigError` naming the key, the
value and what is allowed, before any work starts (sklearn's ``_parameter_constraints`` idea).
The YAML tree in ``params/`` is the only source of values: every field here is ``MISSING``,
so a key removed from the tree (``-S '~optimizer.lr'``) fails validation by name instead of
silently falling back to a default written in a second place. The dataclasses are not frozen
only because OmegaConf cannot merge into frozen schemas; treat instances as read-only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from mnist_softmax.errors import ConfigError

PARAMS_FILE = "params.yaml"
# columns the served model returns beside one probability column per class name
OUTPUT_COLUMNS = ("label", "set")
CONFIG_DIR = "params"
CONFIG_NAME = "config"


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config: {key}={value!r} (allowed: {allowed})")


def _one_of(key: str, value: Any, choices: tuple[str, ...]) -> None:
    _require(value in choices, key, value, " | ".join(choices))


@dataclass
class IdxFileConfig:
    name: str = MISSING
    sha256: str = MISSING

    def __post_init__(self) -> None:
        digest = self.sha256.lower()
        _require(
            len(digest) == 64 and all(c in "0123456789abcdef" for c in digest),
            f"sha256 of {self.name}",
            self.sha256,
            "64 hex digits",
        )


@dataclass
class DataFilesConfig:
    train_images: IdxFileConfig = MISSING
    train_labels: IdxFileConfig = MISSING
    test_images: IdxFileConfig = MISSING
    test_labels: IdxFileConfig = MISSING


@dataclass
class InboxConfig:
    """What a new labelled batch must satisfy before the ingest stage merges it."""

    min_images: int = MISSING
    max_images: int = MISSING
    holdout: float = MISSING

    def __post_init__(self) -> None:
        _require(self.min_images >= 1, "data.inbox.min_images", self.min_images, "integer >= 1")
        _require(
            self.max_images >= self.min_images,
            "data.inbox.max_images",
            self.max_images,
            "integer >= data.inbox.min_images",
        )
        _require(0 < self.holdout < 1, "data.inbox.holdout", self.holdout, "0 < share < 1")


@dataclass
class DataConfig:
    name: str = MISSING
    mirrors: list[str] = MISSING
    files: DataFilesConfig = MISSING
    class_names: list[str] = MISSING
    image_shape: list[int] = MISSING
    val_size: int = MISSING
    split_seed: int = MISSING
    scaling: str = MISSING
    std_floor: float = MISSING
    deskew: bool = MISSING
    timeout_s: float = MISSING
    retries: int = MISSING
    backoff_s: float = MISSING
    max_file_mb: float = MISSING
    attempt_s: float = MISSING
    inbox: InboxConfig = MISSING

    def __post_init__(self) -> None:
        _require(len(self.mirrors) >= 1, "data.mirrors", self.mirrors, "at least one URL")
        names = list(self.class_names)
        _require(len(names) >= 2, "data.class_names", names, ">= 2 names")
        # names are data (any printable text: "/", ",", quotes, non-ASCII), but each must be
        # findable: distinct, not blank, and not a column the served model adds beside them
        _require(len(set(names)) == len(names), "data.class_names", names, "distinct names")
        _require(
            all(n.strip() and n.isprintable() for n in names),
            "data.class_names",
            names,
            "non-blank printable text (no tabs or newlines)",
        )
        taken = sorted(set(names) & set(OUTPUT_COLUMNS))
        _require(not taken, "data.class_names", taken, f"names other than {OUTPUT_COLUMNS}")
        _require(
            len(self.image_shape) == 2 and min(self.image_shape) >= 1,
            "data.image_shape",
            self.image_shape,
            "[height, width], both >= 1",
        )
        _require(self.val_size >= 1, "data.val_size", self.val_size, "integer >= 1")
        _require(self.split_seed >= 0, "data.split_seed", self.split_seed, "integer >= 0")
        _one_of("data.scaling", self.scaling, ("standardize", "unit"))
        _require(self.std_floor > 0, "data.std_floor", self.std_floor, "float > 0")
        _require(self.timeout_s > 0, "data.timeout_s", self.timeout_s, "seconds > 0")
        _require(self.retries >= 1, "data.retries", self.retries, "integer >= 1")
        _require(self.backoff_s >= 0, "data.backoff_s", self.backoff_s, "seconds >= 0")
        _require(self.max_file_mb > 0, "data.max_file_mb", self.max_file_mb, "megabytes > 0")
        _require(self.attempt_s > 0, "data.attempt_s", self.attempt_s, "seconds > 0")


@dataclass
class ModelConfig:
    dtype: str = MISSING
    l2: float = MISSING
    output: str = MISSING

    def __post_init__(self) -> None:
        _one_of("model.dtype", self.dtype, ("float32", "float64"))
        _one_of("model.output", self.output, ("softmax", "sparsemax"))
        _require(self.l2 >= 0, "model.l2", self.l2, "float >= 0")


@dataclass
class SGDConfig:
    name: str = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    momentum: float = MISSING
    nesterov: bool = MISSING
    schedule: str = MISSING
    warmup_epochs: int = MISSING
    step_epochs: int = MISSING
    step_gamma: float = MISSING
    patience: int = MISSING

    def __post_init__(self) -> None:
        _one_of("optimizer.name", self.name, ("sgd",))
        _require(self.epochs >= 1, "optimizer.epochs", self.epochs, "integer >= 1")
        _require(self.batch_size >= 1, "optimizer.batch_size", self.batch_size, "integer >= 1")
        _require(self.lr > 0, "optimizer.lr", self.lr, "float > 0")
        _require(0 <= self.momentum < 1, "optimizer.momentum", self.momentum, "0 <= momentum < 1")
        _one_of("optimizer.schedule", self.schedule, ("constant", "step", "cosine"))
        _require(
            0 <= self.warmup_epochs < self.epochs,
            "optimizer.warmup_epochs",
            self.warmup_epochs,
            "0 <= warmup_epochs < epochs",
        )
        _require(self.step_epochs >= 1, "optimizer.step_epochs", self.step_epochs, "integer >= 1")
        _require(0 < self.step_gamma <= 1, "optimizer.step_gamma", self.step_gamma, "0 < g <= 1")
        _require(self.patience >= 0, "optimizer.patience", self.patience, "integer >= 0 (0: off)")


@dataclass
class LBFGSConfig:
    name: str = MISSING
    max_iter: int = MISSING
    tol: float = MISSING
    history: int = MISSING

    def __post_init__(self) -> None:
        _one_of("optimizer.name", self.name, ("lbfgs",))
        _require(self.max_iter >= 1, "optimizer.max_iter", self.max_iter, "integer >= 1")
        _require(self.tol > 0, "optimizer.tol", self.tol, "float > 0")
        _require(self.history >= 1, "optimizer.history", self.history, "integer >= 1")


OptimizerConfig = SGDConfig | LBFGSConfig
_OPTIMIZERS: dict[str, type] = {"sgd": SGDConfig, "lbfgs": LBFGSConfig}


@dataclass
class CalibrationConfig:
    method: str = MISSING
    t_min: float = MISSING
    t_max: float = MISSING

    def __post_init__(self) -> None:
        _one_of("calibration.method", self.method, ("temperature", "none"))
        _require(self.t_min > 0, "calibration.t_min", self.t_min, "float > 0")
        _require(self.t_max > self.t_min, "calibration.t_max", self.t_max, "float > t_min")


@dataclass
class ConformalConfig:
    """Split conformal prediction sets (:mod:`mnist_softmax.evaluation.conformal`)."""

    alpha: float = MISSING
    method: str = MISSING
    mondrian: bool = MISSING
    lam: float = MISSING
    k_reg: int = MISSING
    holdout: float = MISSING

    def __post_init__(self) -> None:
        _require(0 < self.alpha < 1, "conformal.alpha", self.alpha, "0 < alpha < 1")
        _one_of("conformal.method", self.method, ("lac", "aps", "raps"))
        _require(self.lam >= 0, "conformal.lam", self.lam, "float >= 0")
        _require(self.k_reg >= 0, "conformal.k_reg", self.k_reg, "integer >= 0")
        _require(0 < self.holdout < 1, "conformal.holdout", self.holdout, "0 < share < 1")


@dataclass
class EvaluationConfig:
    n_bins: int = MISSING
    binning: str = MISSING
    bootstrap_samples: int = MISSING
    ci_level: float = MISSING
    n_mistakes: int = MISSING

    def __post_init__(self) -> None:
        _require(self.n_bins >= 1, "evaluation.n_bins", self.n_bins, "integer >= 1")
        _one_of("evaluation.binning", self.binning, ("uniform", "quantile"))
        _require(
            self.bootstrap_samples >= 0,
            "evaluation.bootstrap_samples",
            self.bootstrap_samples,
            "integer >= 0 (0: no interval)",
        )
        _require(0 < self.ci_level < 1, "evaluation.ci_level", self.ci_level, "0 < level < 1")
        _require(self.n_mistakes >= 1, "evaluation.n_mistakes", self.n_mistakes, "integer >= 1")


@dataclass
class TrackingConfig:
    uri: str | None = MISSING
    experiment_name: str = MISSING
    registered_model: str = MISSING
    register: bool = MISSING

    def __post_init__(self) -> None:
        _require(bool(self.experiment_name), "tracking.experiment_name", "", "a non-empty name")
        _require(bool(self.registered_model), "tracking.registered_model", "", "a non-empty name")


@dataclass
class PathsConfig:
    raw_dir: str = MISSING
    prepared_dir: str = MISSING
    data_report: str = MISSING
    model: str = MISSING
    train_metrics: str = MISSING
    train_curves: str = MISSING
    calibration: str = MISSING
    calibration_metrics: str = MISSING
    conformal: str = MISSING
    eval_metrics: str = MISSING
    per_class: str = MISSING
    conformal_report: str = MISSING
    reliability_uncalibrated: str = MISSING
    reliability_calibrated: str = MISSING
    confusion: str = MISSING
    figures_dir: str = MISSING
    incoming_dir: str = MISSING
    quarantine_dir: str = MISSING
    batches_dir: str = MISSING
    batch_manifest: str = MISSING
    batch_metrics: str = MISSING
    drift_dir: str = MISSING


# What the retrain job measures for both models, from their pyfuncs' calibrated probabilities.
RETRAIN_METRICS = ("test/acc", "test/nll_calibrated", "test/ece_calibrated")
# The same on the held-out slices of the batches the champion never saw (only when some arrived).
NEW_BATCH_METRICS = ("new_batches/acc", "new_batches/nll_calibrated")


@dataclass
class RetrainConfig:
    """Champion/challenger rule over the metrics in ``RETRAIN_METRICS``."""

    higher_is_better: list[str] = MISSING
    lower_is_better: list[str] = MISSING
    margins: dict[str, float] = MISSING

    def __post_init__(self) -> None:
        # a mistyped name would otherwise block every promotion ("missing"), silently
        known = (*RETRAIN_METRICS, *NEW_BATCH_METRICS)
        allowed = " | ".join(known)
        for key in ("higher_is_better", "lower_is_better"):
            for name in getattr(self, key):
                _require(name in known, f"retrain.{key}", name, allowed)
        for name in self.margins:
            _require(name in known, "retrain.margins", name, allowed)


@dataclass
class Config:
    seed: int = MISSING
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: Any = MISSING
    calibration: CalibrationConfig = MISSING
    conformal: ConformalConfig = MISSING
    evaluation: EvaluationConfig = MISSING
    tracking: TrackingConfig = MISSING
    paths: PathsConfig = MISSING
    retrain: RetrainConfig = MISSING

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain nested dicts (for hashing and MLflow params)."""
        return asdict(self)

    def hash(self, *keys: str) -> str:
        """Return a short sha256 of the given dotted keys (all when none), to stamp artefacts."""
        full = self.to_dict()
        chosen = select_keys(full, list(keys)) if keys else full
        blob = json.dumps(chosen, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def select_keys(tree: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """Return the sub-tree of ``tree`` holding only the dotted ``keys`` (with their children)."""
    out: dict[str, Any] = {}
    for key in keys:
        *parents, leaf = key.split(".")
        src, dst = tree, out
        for part in parents:
            src = src[part]
            dst = dst.setdefault(part, {})
        dst[leaf] = src[leaf]
    return out


def _structured(schema: type, node: Any, prefix: str) -> Any:
    """Check one config node against a dataclass schema and return the dataclass instance."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as exc:
        key = getattr(exc, "full_key", None) or "?"
        reason = str(exc.msg).splitlines()[0]
        raise ConfigError(f"invalid config: unknown key {prefix}{key} ({reason})") from None
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(
            f"invalid config: {prefix}{key} is missing (every key must be set in {CONFIG_DIR}/)"
        ) from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        value = getattr(exc, "value", None) if hasattr(exc, "value") else None
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"invalid config: {prefix}{key}={value!r}: {first_line}") from None


def config_from_container(raw: DictConfig | dict[str, Any]) -> Config:
    """Validate a composed config (from Hydra or params.yaml) into a :class:`Config`."""
    node = OmegaConf.create(raw) if isinstance(raw, dict) else raw
    if not isinstance(node, DictConfig):
        raise ConfigError("invalid config: the top level must be a mapping")
    optimizer = node.get("optimizer")
    if not isinstance(optimizer, DictConfig) or optimizer.get("name") not in _OPTIMIZERS:
        name = optimizer.get("name") if isinstance(optimizer, DictConfig) else optimizer
        raise ConfigError(f"invalid config: optimizer.name={name!r} (allowed: sgd | lbfgs)")
    cfg = _structured(Config, node, "")  # optimizer (typed Any) passes through as a dict
    opt = _structured(_OPTIMIZERS[optimizer.name], optimizer, "optimizer.")
    return Config(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "optimizer": opt})


def load_config(path: str | Path = PARAMS_FILE) -> Config:
    """Load and validate ``params.yaml``; a missing file says how to make it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path} not found: run `dvc repro compose` (or `python pipeline/compose.py`) "
            f"to compose it from {CONFIG_DIR}/"
        )
    try:
        raw = OmegaConf.load(path)
    except Exception as exc:  # yaml errors come in many types
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return config_from_container(raw)


def load_or_compose(params_file: str | Path = PARAMS_FILE) -> Config:
    """Return ``params.yaml``'s config, or the one composed from ``params/`` when it is absent.

    For the read-only commands (``compare``, ``ui``) that may run before the first
    ``dvc repro`` has written params.yaml.
    """
    if Path(params_file).is_file():
        return load_config(params_file)
    return config_from_container(compose(CONFIG_DIR))


def compose(config_dir: str | Path = CONFIG_DIR, overrides: list[str] | None = None) -> DictConfig:
    """Compose the Hydra tree in ``config_dir`` with command-line style overrides."""
    import yaml
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(str(Path(config_dir).resolve()), version_base=None):
            return hydra_compose(CONFIG_NAME, overrides=list(overrides or []))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot compose {config_dir}/: {str(exc).splitlines()[0]}") from None
    except yaml.MarkedYAMLError as exc:  # a syntax error in one of the files
        mark = exc.problem_mark
        where = f"{mark.name}, line {mark.line + 1}" if mark else str(config_dir)
        raise ConfigError(f"{where} is not valid YAML: {exc.problem}; fix it and rerun") from None


def to_yaml(cfg: DictConfig) -> str:
    """Render a composed config as the YAML that goes into params.yaml."""
    return OmegaConf.to_yaml(cfg, resolve=True, sort_keys=False)
