"""``mnist-softmax compare``: the last MLflow runs side by side, as a table or CSV.

One row per pipeline execution (newest first): the run's name (what its config changes),
test accuracy, NLL and ECE after and before calibration, the temperature, the registered model
version and the DVC experiment. The same numbers as the MLflow UI, without starting a server.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from mnist_softmax.config import PARAMS_FILE, load_or_compose
from mnist_softmax.errors import PipelineError

# column shown -> column of mlflow.search_runs' DataFrame; "name" is the run's name, what its
# config changes in params/ (tracking/run_name.py), as in the MLflow UI's legends
COLUMNS: dict[str, str] = {
    "run": "run_id",
    "start": "start_time",
    "status": "status",
    "name": "tags.mlflow.runName",
    "acc": "metrics.test/acc",
    "nll_cal": "metrics.test/nll_calibrated",
    "ece_cal": "metrics.test/ece_calibrated",
    "nll": "metrics.test_detail/nll",
    "ece": "metrics.test_detail/ece",
    "T": "metrics.temperature",
    "version": "tags.registered_model_version",
    "exp": "tags.dvc.exp_name",
}


def runs_table(runs: pd.DataFrame, short: bool = True) -> pd.DataFrame:
    """Pick and rename the compared columns of ``mlflow.search_runs`` output.

    Columns a run lacks (an L-BFGS run has no ``epochs``, a FAILED run no metrics) stay empty.
    ``short`` trims run ids to 8 characters and start times to minutes, for people.
    """
    table = runs.reindex(columns=list(COLUMNS.values())).set_axis(list(COLUMNS), axis=1)
    if short and len(table):
        table["run"] = table["run"].str[:8]
        table["exp"] = table["exp"].replace("", None)  # `dvc repro` runs have no exp name
        table["start"] = pd.to_datetime(table["start"]).dt.strftime("%Y-%m-%d %H:%M")
    return table


def main(argv: list[str] | None = None) -> int:
    """Print the last ``-n`` runs of the configured experiment; ``--csv`` for machines."""
    parser = argparse.ArgumentParser(
        prog="mnist-softmax compare", description="Print the last MLflow runs of the experiment."
    )
    parser.add_argument("-n", type=int, default=10, help="number of runs, newest first (10)")
    parser.add_argument("--csv", action="store_true", help="full-precision CSV on stdout")
    parser.add_argument("--params", default=PARAMS_FILE, help="config naming the experiment")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"-n must be >= 1, got {args.n}")
    try:
        tracking = load_or_compose(args.params).tracking
        from mnist_softmax.tracking.run_logging import search_runs  # mlflow's import costs seconds

        runs = search_runs(args.n, tracking)
    except PipelineError as exc:
        sys.stderr.write(f"compare: error: {exc}\n")
        return exc.exit_code
    table = runs_table(runs, short=not args.csv)
    if args.csv:
        table.to_csv(sys.stdout, index=False)
    elif table.empty:
        name = tracking.experiment_name
        sys.stdout.write(f"no runs in experiment {name!r} yet: run `dvc repro` first\n")
    else:
        sys.stdout.write(table.to_string(index=False, na_rep="-", float_format="{:.4f}".format))
        sys.stdout.write("\n")
    return 0
