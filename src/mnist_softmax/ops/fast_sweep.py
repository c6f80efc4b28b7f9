"""The fast path of ``mnist-softmax sweep``: a whole grid in one process, one pass per stack.

A queued DVC sweep pays, per config, for a Python start, the imports and DVC's bookkeeping of six
stages: about 11 s for 1 s of training. Here the grid (``-S key=v1,v2`` expanded exactly as
``dvc exp run -S`` expands it, by Hydra's sweeper) is composed from ``params/``, the configs that
share seed, batch size and epochs are trained together by
:func:`mnist_softmax.model.stacked_sgd.train_stacked`, and each is then calibrated and
evaluated with the pipeline's own functions on the workspace's prepared splits, so its metrics
are those its DVC experiment would write. The printed ``dvc exp run -S ...`` command retrains
any of them as a normal experiment (model file, plots, registered version).

Only keys that do not change the prepared data can vary (``data.*`` cannot), and only SGD
stacks: everything else is the queued path's job (``--queue``).
"""

from __future__ import annotations

import logging
import shlex
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mnist_softmax.atomic import read_json
from mnist_softmax.config import CONFIG_DIR, Config, SGDConfig, compose, config_from_container
from mnist_softmax.data.scaler import load_scaler, scaler_path
from mnist_softmax.data.splits import Split, load_split, split_path
from mnist_softmax.errors import ConfigError, TrainingDivergedError
from mnist_softmax.evaluation.evaluate import evaluate
from mnist_softmax.evaluation.temperature import calibrate
from mnist_softmax.model.stacked_sgd import stack_key, train_stacked
from mnist_softmax.model.training import TrainResult

log = logging.getLogger(__name__)

# the same for every config of a fast sweep: the prepared data and where the runs go
SHARED_GROUPS = ("data", "tracking", "paths")
SHOWN_METRICS = ("val/acc", "test/acc", "test/nll_calibrated", "test/ece_calibrated")


@dataclass(frozen=True)
class ConfigOutcome:
    """One config of the grid: its overrides, config, metrics (flat names) and curves.

    ``error`` is why it failed (e.g. diverged), "" when it succeeded; then metrics are empty.
    """

    overrides: tuple[str, ...]
    cfg: Config
    metrics: dict[str, float]
    curves: pd.DataFrame
    error: str

    @property
    def name(self) -> str:
        return " ".join(self.overrides)

    @property
    def command(self) -> str:
        """The ``dvc exp run`` command that runs this config as a normal DVC experiment."""
        return " ".join(["dvc exp run", *(f"-S {shlex.quote(o)}" for o in self.overrides)])


def expand_grid(overrides: list[str]) -> list[tuple[str, ...]]:
    """Return the cartesian product of ``-S`` overrides, as DVC's Hydra sweep forms it.

    ``["optimizer.lr=0.1,0.2", "model.l2=0"]`` -> ``[("optimizer.lr=0.1", "model.l2=0"),
    ("optimizer.lr=0.2", "model.l2=0")]``; values come back as Hydra normalizes them.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"invalid override: {str(exc).splitlines()[0]}") from None
    return [tuple(batch) for batch in BasicSweeper.split_arguments(parsed, None)[0]]


def compose_grid(grid: list[tuple[str, ...]], base: Config) -> list[Config]:
    """Compose and validate every config of the grid; refuse what the fast path cannot run."""
    cfgs = [config_from_container(compose(CONFIG_DIR, list(overrides))) for overrides in grid]
    for overrides, cfg in zip(grid, cfgs, strict=True):
        if not isinstance(cfg.optimizer, SGDConfig):
            raise ConfigError(
                f"{' '.join(overrides)}: only SGD configs are stacked; use --queue for "
                f"optimizer={cfg.optimizer.name}"
            )
        for group in SHARED_GROUPS:
            if getattr(cfg, group) != getattr(base, group):
                raise ConfigError(
                    f"{' '.join(overrides)} changes {group}.*, which the fast sweep shares "
                    f"between configs (it trains on the workspace's prepared data): use --queue"
                )
    return cfgs


def run_fast_sweep(overrides: list[str], base: Config, threads: int = 1) -> list[ConfigOutcome]:
    """Train, calibrate and evaluate every config of the grid; return them in grid order.

    base : the workspace's config (``params.yaml``), whose prepared splits are up to date
    """
    grid = expand_grid(overrides)
    cfgs = compose_grid(grid, base)
    log.info("%d config(s) from %s", len(cfgs), " ".join(f"-S {o}" for o in overrides))
    prepared = base.paths.prepared_dir
    train, val, test = (load_split(split_path(prepared, s)) for s in ("train", "val", "test"))
    scaler = load_scaler(scaler_path(prepared))
    data_report = read_json(base.paths.data_report)
    stacks: dict[str, list[int]] = defaultdict(list)
    for k, cfg in enumerate(cfgs):
        stacks[stack_key(cfg)].append(k)
    outcomes: dict[int, ConfigOutcome] = {}
    for members in stacks.values():
        results = train_stacked(train, val, scaler, [cfgs[k] for k in members], threads)
        for k, result in zip(members, results, strict=True):
            outcomes[k] = _score(grid[k], cfgs[k], result, val, test, data_report)
    return [outcomes[k] for k in range(len(cfgs))]


def _score(
    overrides: tuple[str, ...],
    cfg: Config,
    result: TrainResult | TrainingDivergedError,
    val: Split,
    test: Split,
    data_report: dict[str, Any],
) -> ConfigOutcome:
    """Calibrate and evaluate one trained config as the calibrate and evaluate stages do."""
    from mnist_softmax.tracking.run_record import merge_final_metrics

    if isinstance(result, TrainingDivergedError):
        return ConfigOutcome(overrides, cfg, {}, pd.DataFrame(), str(result))
    model, ev_cfg = result.model, cfg.evaluation
    calibration = calibrate(
        model.logits(val.X), val.y, method=cfg.calibration.method, t_min=cfg.calibration.t_min,
        t_max=cfg.calibration.t_max, n_bins=ev_cfg.n_bins, binning=ev_cfg.binning,
    )  # fmt: skip
    rng = np.random.default_rng(cfg.seed)  # the evaluate stage's bootstrap generator
    evaluation = evaluate(
        model.logits(test.X), test.y, calibration.temperature, list(cfg.data.class_names), rng,
        ev_cfg.n_bins, ev_cfg.binning, ev_cfg.bootstrap_samples, ev_cfg.ci_level,
    )  # fmt: skip
    metrics = merge_final_metrics(
        data_report, result.summary, calibration.to_metrics(), evaluation.metrics
    )
    return ConfigOutcome(overrides, cfg, metrics, result.history, "")


def ranking(outcomes: list[ConfigOutcome], metric: str, higher_is_better: bool) -> pd.DataFrame:
    """Return one row per config, best ``metric`` first and failed configs last."""
    rows = [
        {"config": o.name, **{m: o.metrics.get(m, np.nan) for m in (metric, *SHOWN_METRICS)},
         "status": "FAILED" if o.error else "ok"}
        for o in outcomes
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    order = table.sort_values(metric, ascending=not higher_is_better, na_position="last").index
    table = table.loc[order].reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def sweep_and_log(
    overrides: list[str], threads: int, metric: str, higher_is_better: bool
) -> tuple[pd.DataFrame, list[ConfigOutcome]]:
    """Run the fast sweep on the workspace, log it to MLflow and return the ranking table.

    The table has the child run ids and, per config, the command that reproduces it.
    """
    from mnist_softmax.config import load_config
    from mnist_softmax.tracking.sweep_runs import ChildRun, log_sweep  # mlflow: seconds

    base = load_config()
    outcomes = run_fast_sweep(overrides, base, threads)
    children = [ChildRun(o.name, o.cfg, o.metrics, o.curves, o.command, o.error) for o in outcomes]
    parent_params = {"sweep.overrides": " ".join(overrides), "sweep.size": str(len(outcomes)),
                     "sweep.metric": metric}  # fmt: skip
    logged = log_sweep(base, children, parent_params)
    table = ranking(outcomes, metric, higher_is_better)
    by_name = {o.name: (o, run_id) for o, run_id in zip(outcomes, logged.child_ids, strict=True)}
    table["run"] = [by_name[name][1] for name in table["config"]]
    table["reproduce"] = [by_name[name][0].command for name in table["config"]]
    log.info("parent run %s: %d child runs", logged.parent_id, len(logged.child_ids))
    return table, outcomes
