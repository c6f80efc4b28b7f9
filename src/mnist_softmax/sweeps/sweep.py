"""``mnist-softmax sweep``: run a grid of configs, log one MLflow run each, print the ranking.

By default the fast path (:mod:`mnist_softmax.sweeps.fast_sweep`): every config in this process,
trained side by side, logged as child runs of one parent run, each printed with the
``dvc exp run -S ...`` command that reproduces it. With ``--cluster``, the same grid in blocks
on a Dask cluster (:mod:`mnist_softmax.cluster.runner`), logged the same way. With
``--queue``, a thin driver over DVC's own queue, so what it does is what a person types::

    dvc exp run --queue -S 'optimizer.lr=0.05,0.1' -S 'optimizer.momentum=0.8,0.9'
    dvc queue start -j 2

then waits for those experiments, shows ``dvc queue logs`` of each failure, checks that every
successful experiment left exactly one MLflow run (its log stage tags ``dvc.exp_name``), and
prints the runs best first. The runs go wherever the pipeline logs: ``tracking.uri`` or
``$MLFLOW_TRACKING_URI``, e.g. the team server of ``scripts/tracking-server``.
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pandas as pd

log = logging.getLogger(__name__)

_QUEUED = re.compile(r"Queued experiment '([^']+)'")
_DONE = {"Success", "Failed"}
_LOG_SKIPPED = "Stage 'log' didn't change, skipping"


@dataclass(frozen=True)
class SweepResult:
    """Outcome of a sweep: experiment names by final queue status, and the MLflow runs."""

    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    missing_runs: tuple[str, ...]  # succeeded in DVC but no MLflow run carries their name
    unchanged: tuple[str, ...]  # identical to the committed baseline: DVC skipped every stage
    runs: pd.DataFrame


def main(argv: list[str] | None = None) -> int:
    """Run ``mnist-softmax sweep``; return 0 when every experiment succeeded and was logged."""
    args = _parse_args(argv)
    from mnist_softmax.config import load_config
    from mnist_softmax.errors import ConfigError
    from mnist_softmax.tracking import run_logging as tracking  # lazy: mlflow costs seconds

    if args.cluster and args.queue:
        raise ConfigError(
            "--cluster runs the fast path's blocks on Dask; it cannot be used with --queue"
        )
    if not args.queue:
        return _fast_main(args)
    cfg = load_config()
    tracking.ensure_store(cfg.tracking)  # create store + experiment once, before parallel use
    result = run_sweep(args.set, args.jobs, args.metric, not args.minimize, args.timeout)
    if not result.runs.empty:
        print(result.runs.to_string(index=False))
    for name in result.failed:
        log.error("experiment %s FAILED; its log: dvc queue logs %s", name, name)
    for name in result.unchanged:
        log.warning("experiment %s equals the committed baseline: no new run was logged", name)
    for name in result.missing_runs:
        log.error("experiment %s succeeded but no MLflow run is tagged with its name", name)
    return 1 if result.failed or result.missing_runs else 0


def _fast_main(args: argparse.Namespace) -> int:
    """The fast path: bring the prepared data up to date, sweep, print ranking and commands."""
    from mnist_softmax.sweeps.fast_sweep import sweep_and_log

    _dvc("repro", "preprocess")  # a no-op when params/ and the data have not changed
    table, outcomes = sweep_and_log(
        args.set, args.jobs, args.metric, not args.minimize, args.cluster, args.block_size
    )
    shown = table.drop(columns=["reproduce"]).assign(run=table["run"].str[:8])
    print(shown.to_string(index=False, float_format="{:.4f}".format))
    print("\nreproduce one as a normal DVC experiment (same metrics, plus model and plots):")
    for rank, command in zip(table["rank"], table["reproduce"], strict=True):
        print(f"  {rank:>3}  {command}")
    for outcome in outcomes:
        if outcome.error:
            log.error("config %s FAILED: %s", outcome.name, outcome.error)
    return 1 if any(o.error for o in outcomes) else 0


def run_sweep(
    overrides: list[str],
    jobs: int,
    metric: str = "test/acc",
    higher_is_better: bool = True,
    timeout_s: float | None = None,
) -> SweepResult:
    """Queue the grid of ``overrides`` (``-S`` values), run it with ``jobs`` workers, rank it.

    Parameters
    ----------
    overrides : list of str
        ``-S`` arguments such as ``"optimizer.lr=0.05,0.1"``; DVC queues their cartesian product.
    jobs : int
        Experiments run at once (``dvc queue start -j``); at most the number of cores.
    metric : str
        MLflow metric the table is sorted by.
    higher_is_better : bool
        Sort direction of ``metric``.
    timeout_s : float or None
        Give up waiting after this many seconds (the queue keeps running).
    """
    names = _queue_experiments(overrides)
    log.info("queued %d experiment(s): %s", len(names), ", ".join(names))
    # Workers exit on their own once the queue is empty. No `dvc queue stop` afterwards: its
    # shutdown broadcast outlives exited workers and would stop the next sweep's workers.
    _dvc("queue", "start", "-j", str(jobs))
    statuses = _wait_for(names, timeout_s)
    failed = tuple(n for n in names if statuses.get(n) != "Success")
    for name in failed:
        log.error("--- dvc queue logs %s ---\n%s", name, _tail(_queue_logs(name), 40))
    runs = _runs_for(names, metric, higher_is_better)
    logged = set(runs["experiment"]) if not runs.empty else set()
    succeeded = tuple(n for n in names if n not in failed)
    unlogged = [n for n in succeeded if n not in logged]
    unchanged = tuple(n for n in unlogged if _LOG_SKIPPED in _queue_logs(n))
    missing = tuple(n for n in unlogged if n not in unchanged)
    return SweepResult(succeeded, failed, missing, unchanged, runs)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mnist-softmax sweep", description=__doc__.split("\n")[0])
    parser.add_argument(
        "-S", "--set", action="append", required=True, metavar="KEY=V1,V2",
        help="Hydra override; comma-separated values form a grid (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--queue", action="store_true",
        help="queue one DVC experiment per config (dvc exp run --queue) instead of the fast path",
    )  # fmt: skip
    parser.add_argument(
        "-j", "--jobs", type=int, default=2,
        help="cores to use: BLAS threads (fast path) or experiments run at once (--queue)",
    )  # fmt: skip
    parser.add_argument(
        "--cluster", type=_cluster_address, metavar="ADDRESS",
        help="run the fast path's blocks on a Dask cluster: a scheduler address "
        "(tcp://HOST:PORT) or local:N for a LocalCluster of N worker processes",
    )  # fmt: skip
    parser.add_argument(
        "--block-size", type=_positive_int, metavar="N",
        help="configs per block sent to a worker (default: sized so every worker gets at "
        "least two blocks, at most 16 configs each)",
    )  # fmt: skip
    parser.add_argument("--metric", default="test/acc", help="MLflow metric that ranks the runs")
    parser.add_argument("--minimize", action="store_true", help="lower metric is better")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait at most")
    return parser.parse_args(argv)


def _cluster_address(text: str) -> str:
    from mnist_softmax.cluster.address import cluster_address

    try:
        return cluster_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _dvc(*args: str) -> str:
    """Run a dvc command; raise PipelineError with its output when it fails.

    Output goes through a temporary file, not a pipe: ``dvc queue start`` leaves worker
    processes behind that inherit its stdout, and reading a pipe would wait for them to exit.
    """
    from mnist_softmax.errors import PipelineError

    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(["dvc", *args], stdout=out, stderr=subprocess.STDOUT, text=True)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise PipelineError(f"dvc {' '.join(args)} failed:\n{text}")
    return text


def _queue_experiments(overrides: list[str]) -> list[str]:
    # a sweep's runs log their models but add no registry versions (12 runs, 0 versions)
    args = ["exp", "run", "--queue", "-S", "tracking.register=false"]
    for override in overrides:
        args += ["-S", override]
    names = _QUEUED.findall(_dvc(*args))
    if not names:
        from mnist_softmax.errors import PipelineError

        raise PipelineError(f"dvc queued no experiment for {overrides}")
    return names


def _queue_status() -> dict[str, str]:
    """Parse ``dvc queue status`` (columns Task, Name, Created, Status) into {name: status}."""
    statuses = {}
    for line in _dvc("queue", "status").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[-1] in {"Queued", "Running", *_DONE}:
            statuses[fields[1]] = fields[-1]
    return statuses


def _wait_for(names: list[str], timeout_s: float | None, poll_s: float = 3.0) -> dict[str, str]:
    start, last = time.monotonic(), ""
    while True:
        statuses = _queue_status()
        mine = {n: statuses.get(n, "Unknown") for n in names}
        summary = ", ".join(
            f"{s}: {list(mine.values()).count(s)}" for s in sorted(set(mine.values()))
        )
        if summary != last:
            log.info("%s", summary)
            last = summary
        if all(s in _DONE for s in mine.values()):
            return mine
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            log.error("gave up waiting after %.0f s; the queue keeps running", timeout_s)
            return mine
        time.sleep(poll_s)


def _queue_logs(name: str) -> str:
    proc = subprocess.run(["dvc", "queue", "logs", name], capture_output=True, text=True)
    return proc.stdout + proc.stderr


def _tail(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


def _runs_for(names: list[str], metric: str, higher_is_better: bool) -> pd.DataFrame:
    """MLflow runs of these experiments as a table: name, run id, swept params, metrics."""
    from mnist_softmax.config import load_config
    from mnist_softmax.tracking import run_logging as tracking

    runs = tracking.search_runs(max(100, 4 * len(names)), load_config().tracking)
    if runs.empty or "tags.dvc.exp_name" not in runs:
        return pd.DataFrame()
    runs = runs[runs["tags.dvc.exp_name"].isin(names)]
    varied = [c for c in runs if c.startswith("params.") and runs[c].nunique() > 1]
    from mnist_softmax.tracking.run_record import mlflow_name

    picked = (metric, "test/nll_calibrated", "test/ece_calibrated")  # the pipeline's names
    shown = [f"metrics.{mlflow_name(m, 'sparsemax') or m}" for m in picked]
    columns = ["tags.dvc.exp_name", "run_id", "status", *varied, *dict.fromkeys(shown)]
    table = runs.reindex(columns=columns).sort_values(shown[0], ascending=not higher_is_better)
    table = table.rename(columns=lambda c: c.split(".", 1)[1] if "." in c else c)
    return table.rename(columns={"dvc.exp_name": "experiment"})
