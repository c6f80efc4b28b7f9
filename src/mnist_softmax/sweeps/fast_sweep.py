"""The fast path of ``mnist-softmax sweep``: a whole grid in one process, one pass per stack.

A queued DVC sweep pays, per config, for a Python start, the imports and DVC's bookkeeping of six
stages: about 11 s for 1 s of training. Here the grid (``-S key=v1,v2`` expanded exactly as
``dvc exp run -S`` expands it, by Hydra's sweeper) is composed from ``params/``, the configs that
share seed, batch size, epochs and output (softmax or sparsemax) are trained together by
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mnist_softmax.atomic import read_json
from mnist_softmax.config import CONFIG_DIR, Config, SGDConfig, compose, config_from_container
from mnist_softmax.data.prepare import PreparedData, load_prepared
from mnist_softmax.errors import ConfigError, TrainingDivergedError
from mnist_softmax.evaluation.calibration import calibrate_model
from mnist_softmax.evaluation.evaluate import evaluate_model
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


@dataclass(frozen=True)
class SweepData:
    """What every config of a sweep reads: the prepared splits and the data report.

    One object, so a cluster ships it to each worker once (about 55 MB for MNIST) instead of
    once per block.
    """

    prepared: PreparedData
    data_report: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return self.prepared.nbytes


def load_sweep_data(base: Config) -> SweepData:
    """Read what ``dvc repro preprocess`` wrote for the workspace's config ``base``."""
    return SweepData(load_prepared(base.paths.prepared_dir), read_json(base.paths.data_report))


@dataclass(frozen=True)
class SweepPlan:
    """The grid (one tuple of overrides per config) and its composed, validated configs."""

    grid: list[tuple[str, ...]]
    cfgs: list[Config]

    def stacks(self) -> list[list[int]]:
        """Indices of the configs that can train side by side (equal :func:`stack_key`)."""
        stacks: dict[str, list[int]] = defaultdict(list)
        for k, cfg in enumerate(self.cfgs):
            stacks[stack_key(cfg)].append(k)
        return list(stacks.values())


def plan_sweep(overrides: list[str], base: Config) -> SweepPlan:
    """Expand and compose the grid of ``-S`` overrides; refuse what the fast path cannot run."""
    grid = expand_grid(overrides)
    cfgs = compose_grid(grid, base)
    log.info("%d config(s) from %s", len(cfgs), " ".join(f"-S {o}" for o in overrides))
    return SweepPlan(grid, cfgs)


def run_block(
    data: SweepData, grid: Sequence[tuple[str, ...]], cfgs: Sequence[Config], threads: int = 1
) -> list[ConfigOutcome]:
    """Train one stack of configs together, then calibrate and evaluate each: the unit of work.

    The in-process sweep runs one block per stack; a cluster runs smaller blocks on its workers.
    """
    prepared = data.prepared
    results = train_stacked(prepared.train, prepared.val, prepared.scaler, cfgs, threads)
    return [
        _score(overrides, cfg, result, data)
        for overrides, cfg, result in zip(grid, cfgs, results, strict=True)
    ]


def run_in_process(
    plan: SweepPlan, data: SweepData, threads: int = 1
) -> Iterator[tuple[int, ConfigOutcome]]:
    """Run every stack in this process; yield (grid index, outcome) as each stack finishes."""
    for members in plan.stacks():
        outcomes = run_block(
            data, [plan.grid[k] for k in members], [plan.cfgs[k] for k in members], threads
        )
        yield from zip(members, outcomes, strict=True)


def run_fast_sweep(overrides: list[str], base: Config, threads: int = 1) -> list[ConfigOutcome]:
    """Train, calibrate and evaluate every config of the grid here; return them in grid order.

    base : the workspace's config (``params.yaml``), whose prepared splits are up to date
    """
    plan = plan_sweep(overrides, base)
    outcomes = dict(run_in_process(plan, load_sweep_data(base), threads))
    return [outcomes[k] for k in range(len(plan.cfgs))]


def _score(
    overrides: tuple[str, ...],
    cfg: Config,
    result: TrainResult | TrainingDivergedError,
    data: SweepData,
) -> ConfigOutcome:
    """Calibrate and evaluate one trained config as the calibrate and evaluate stages do."""
    from mnist_softmax.tracking.run_record import merge_final_metrics

    if isinstance(result, TrainingDivergedError):
        return ConfigOutcome(overrides, cfg, {}, pd.DataFrame(), str(result))
    model, val, test = result.model, data.prepared.val, data.prepared.test
    fitted = calibrate_model(model, val, cfg)
    calibration = fitted.result
    evaluation = evaluate_model(model, test, calibration.temperature, fitted.conformal, cfg)
    metrics = merge_final_metrics(
        data.data_report, result.summary, calibration.to_metrics(), evaluation.metrics
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
    overrides: list[str],
    threads: int,
    metric: str,
    higher_is_better: bool,
    cluster: str | None = None,
    block_size: int | None = None,
) -> tuple[pd.DataFrame, list[ConfigOutcome]]:
    """Run the fast sweep on the workspace, log it to MLflow and return the ranking table.

    Each config is logged as a child run the moment it finishes, here or on the Dask cluster
    at ``cluster`` (``tcp://host:port`` or ``local:N``; see :mod:`mnist_softmax.cluster`).
    The table has the child run ids and, per config, the command that reproduces it.
    """
    from mnist_softmax.config import load_config
    from mnist_softmax.tracking.sweep_runs import ChildRun, SweepRecorder  # mlflow: seconds

    base = load_config()
    plan = plan_sweep(overrides, base)
    data = load_sweep_data(base)
    parent_params = {"sweep.overrides": " ".join(overrides), "sweep.size": str(len(plan.cfgs)),
                     "sweep.metric": metric}  # fmt: skip
    parent_tags: dict[str, str] = {}
    if cluster is not None:
        from mnist_softmax.cluster.runner import ClusterRun

        runner = ClusterRun(cluster, block_size)
        parent_tags["sweep.cluster"] = runner.shown
    outcomes: dict[int, ConfigOutcome] = {}
    with SweepRecorder(base, parent_params, parent_tags) as recorder:
        arriving = runner.run(plan, data) if cluster else run_in_process(plan, data, threads)
        for k, o in arriving:
            recorder.log(ChildRun(o.name, o.cfg, o.metrics, o.curves, o.command, o.error))
            outcomes[k] = o
        if cluster is not None:
            recorder.tag({"sweep.workers": str(len(runner.workers))})
    ordered = [outcomes[k] for k in range(len(plan.cfgs))]
    table = ranking(ordered, metric, higher_is_better)
    by_name = {o.name: o for o in ordered}
    table["run"] = [recorder.child_ids[name] for name in table["config"]]
    table["reproduce"] = [by_name[name].command for name in table["config"]]
    log.info("parent run %s: %d child runs", recorder.parent_id, len(recorder.child_ids))
    return table, ordered
