"""``mnist-softmax history``: past retrain jobs, newest first, from their JSON reports.

The reports in ``reports/retrain/`` are the complete job log of this machine: they include the
jobs that failed or found nothing new, which never reach MLflow as a decision on a model
version (those decisions are also tags on the challenger's run and version, for the UI).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

REPORT_DIR = Path("reports") / "retrain"
COLUMNS = ["started", "decision", "challenger", "champion_before", "champion_after", "acc",
           "new_acc", "new_batches", "champion_batches", "why"]  # fmt: skip


RUNNING, KILLED = "running", "killed"  # a start record; a job found dead with its start record


def mark_killed_jobs(report_dir: Path = REPORT_DIR) -> list[str]:
    """Turn every start record still ``running`` into ``killed``; return those jobs' ids.

    Call with the job lock held: the lock outlives every process of a job (its keeper holds
    it), so a job that still says ``running`` then died without writing its report.
    """
    from mnist_softmax.atomic import write_json

    killed = []
    for path in sorted(report_dir.glob("*.json")):
        report = json.loads(path.read_text())
        if report.get("decision") != RUNNING:
            continue
        report["decision"] = KILLED
        report["reasons"] = ["the job died without a word (SIGKILL, the OOM killer or a power "
                             "loss): its start record was all it wrote"]  # fmt: skip
        write_json(path, report)
        killed.append(report["retrain_id"])
    return killed


def decisions(n: int, report_dir: Path = REPORT_DIR) -> pd.DataFrame:
    """Return the last ``n`` retrain reports as a table, newest first."""
    rows = []
    for path in sorted(report_dir.glob("*.json"), reverse=True)[:n]:
        report = json.loads(path.read_text())
        challenger = report.get("metrics", {}).get("challenger", {})
        rows.append(
            {
                **{key: report.get(key) for key in COLUMNS[:5]},
                "acc": challenger.get("test/acc"),
                "new_acc": challenger.get("new_batches/acc"),  # on the new batches' slices
                # which batches arrived, and which the champion after the job was trained on
                "new_batches": " ".join(report.get("new_batches", [])),
                "champion_batches": " ".join(report.get("champion_batches", [])),
                "why": "; ".join(report.get("reasons", [])),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-softmax history", description=__doc__)
    parser.add_argument("-n", type=int, default=20, help="how many jobs (default 20)")
    parser.add_argument("--csv", action="store_true", help="CSV for machines, every reason")
    args = parser.parse_args(argv)
    table = decisions(args.n)
    if args.csv:
        print(table.to_csv(index=False), end="")
    elif table.empty:
        print(f"no retrain job recorded in {REPORT_DIR}/ yet")
    else:  # the first reason is enough on a terminal; --csv keeps them all
        table["why"] = table["why"].str.split("; ").str[0].str.slice(0, 70)
        print(table.to_string(index=False))
    return 0
