"""``mnist-softmax history``: past retrain decisions, newest first, from MLflow run tags."""

from __future__ import annotations

import argparse

import pandas as pd

from mnist_softmax.config import load_config

COLUMNS = {
    "start_time": "started",
    "tags.registered_model_version": "version",
    "tags.retrain.decision": "decision",
    "tags.retrain.champion_before": "champion_before",
    "metrics.test/acc": "test_acc",
    "metrics.test/nll_calibrated": "test_nll_cal",
    "tags.retrain.reasons": "why",
}


def decisions(n: int) -> pd.DataFrame:
    """Return the last ``n`` runs that carry a retrain decision."""
    import mlflow

    from mnist_softmax import registry

    cfg = load_config()
    registry.client_for(cfg.tracking)
    if mlflow.get_experiment_by_name(cfg.tracking.experiment_name) is None:
        return pd.DataFrame(columns=list(COLUMNS.values()))
    runs = mlflow.search_runs(
        experiment_names=[cfg.tracking.experiment_name],
        filter_string="tags.`retrain.decision` != ''",
        max_results=n,
        order_by=["attributes.start_time DESC"],
    )
    present = [c for c in COLUMNS if c in runs.columns]
    table = runs[present].rename(columns=COLUMNS)
    if "started" in table:
        table["started"] = table["started"].dt.strftime("%Y-%m-%d %H:%M")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-softmax history", description=__doc__)
    parser.add_argument("-n", type=int, default=20, help="how many decisions (default 20)")
    parser.add_argument("--csv", action="store_true", help="CSV for machines")
    args = parser.parse_args(argv)
    table = decisions(args.n)
    if args.csv:
        print(table.to_csv(index=False))
    else:  # the first reason is enough on a terminal; --csv keeps them all
        table["why"] = table["why"].str.split("; ").str[0].str.slice(0, 70)
        print(table.to_string(index=False))
    return 0
