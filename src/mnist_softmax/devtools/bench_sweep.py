"""Benchmark: how long a data scientist waits for sweeps and reruns, measured side by side.

Everything runs in one temporary copy of the project (a fresh git + DVC repository with its own
MLflow store), one command after the other, so the ratios compare like with like on whatever
else the machine is doing: the first ``dvc repro``, ``dvc repro -f``, a change of
``calibration.*`` alone, the fast sweep of a 16- and a 64-config grid, and the queued DVC
sweep of a small grid. Each command's wall time and peak RSS (its process tree's largest) come
from ``os.wait4``. The issue's targets are checked here, in the benchmark, never in timed
tests. A last pair of rows sets one epoch of a single run against one forward and backward
matrix-product pass over the training split, batched and on one thread as the trainer runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mnist_softmax.devtools.bench import print_table
from mnist_softmax.devtools.project_copy import clean_env, copy_project, git

LR = "optimizer.lr=0.05,0.1,0.2,0.5"
L2 = "model.l2=1e-4,5e-4,1e-3,2e-3"
MOMENTUM = "optimizer.momentum=0.5,0.8,0.9,0.95"
GRIDS = {  # label -> -S overrides
    "fast sweep, 16 configs": [LR, L2],
    "fast sweep, 64 configs": [LR, L2, MOMENTUM],
}
CLUSTER_WORKERS = (1, 2)  # the 64-config grid on a LocalCluster of this many workers
_SHIPPED = re.compile(r"prepared data: ([0-9.]+) MB to each worker")
_BLOCK = re.compile(r"block \d+/\d+: (\d+) configs on \S+ in ([0-9.]+) s")
QUEUED = ["optimizer.lr=0.2,0.5", "model.l2=1e-3,2e-3"]  # 4 experiments
EPOCH_ROWS = ("epoch of a single run", "batched X@W + X^T G pass, 1 thread")
TARGETS = {  # row -> (column, bound): the goals
    "fast sweep, 16 configs": ("wall s", 30.0),
    "fast sweep, 64 configs": ("wall s", 90.0),
    "dvc repro -f": ("wall s", 10.0),
    "change calibration.* only": ("wall s", 5.0),
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table (``make bench-sweep``)."""
    args = _parse(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        project = copy_project(Path(args.project).resolve(), Path(tmp) / "project")
        rows.append(_timed("first dvc repro (cold)", ["dvc", "repro"], project))
        if args.cluster_only:
            print_table(pd.DataFrame([*rows, *_cluster_rows(project)]).drop(columns="output"),
                        args.out)  # fmt: skip
            return 0
        rows.append(_timed("dvc repro -f", ["dvc", "repro", "-f"], project))
        _set_yaml_key(project / "params/calibration/temperature.yaml", "t_max", "19.0")
        rows.append(_timed("change calibration.* only", ["dvc", "repro"], project))
        git(project, "commit", "-qam", "calibration change")
        sweep = ["mnist-softmax", "sweep", "-j", str(args.jobs)]
        grids = list(GRIDS.items())[: 1 if args.quick else None]
        for label, grid in grids:
            cmd = [*sweep, *(a for o in grid for a in ("-S", o))]
            rows.append(_timed(label, cmd, project, configs=_grid_size(grid)))
        queued = [*sweep, "--queue", *(a for o in QUEUED for a in ("-S", o))]
        rows.append(_timed("queued DVC sweep", queued, project, configs=_grid_size(QUEUED)))
        rows += _epoch_rows(project)
        if not args.quick:
            rows += _cluster_rows(project)
    print_table(summarize(rows), args.out)
    return 0


def _cluster_rows(project: Path) -> list[dict[str, Any]]:
    """The 64-config grid on LocalClusters of 1 and 2 workers (one BLAS thread each).

    Besides wall time (cluster start, shipping the data, logging included): the seconds the
    workers spent per config (sum of block times / configs) and the megabytes shipped to each
    worker, the figures the scaling model in docs/cluster.md starts from.
    """
    grid = [a for o in GRIDS["fast sweep, 64 configs"] for a in ("-S", o)]
    rows = []
    for workers in CLUSTER_WORKERS:
        cmd = ["mnist-softmax", "sweep", "--cluster", f"local:{workers}", *grid]
        row = _timed(f"cluster sweep, 64 configs, {workers} worker(s)", cmd, project, configs=64)
        blocks = [(int(n), float(s)) for n, s in _BLOCK.findall(row["output"])]
        row["worker s / config"] = sum(s for _, s in blocks) / sum(n for n, _ in blocks)
        row["MB / worker"] = float(_SHIPPED.search(row["output"]).group(1))
        rows.append(row)
    rows[-1]["speedup vs 1 worker"] = rows[0]["wall s"] / rows[-1]["wall s"]
    return rows


def summarize(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Add per-config time, the ratio to the queued sweep's per-config time and the targets."""
    table = pd.DataFrame(rows).drop(columns="output")
    table["s / config"] = table["wall s"] / table["configs"]
    queued = table.loc[table["what"] == "queued DVC sweep", "s / config"]
    commands = ~table["what"].isin(EPOCH_ROWS)  # the epoch rows compare with each other only
    if len(queued):
        table.loc[commands, "queued s/config / s/config"] = queued.iloc[0] / table["s / config"]
    targets = [TARGETS.get(what) for what in table["what"]]
    table["target"] = [f"<= {t[1]:g} s" if t else "" for t in targets]
    table["met"] = [
        ("yes" if row[t[0]] <= t[1] else "no") if t else ""
        for t, (_, row) in zip(targets, table.iterrows(), strict=True)
    ]
    big = table["what"] == "fast sweep, 64 configs"
    table.loc[big, "target"] += ", <= 2048 MB"
    table.loc[big & (table["peak RSS MB"] > 2048), "met"] = "no"
    epoch = table.set_index("what")["wall s"].reindex(list(EPOCH_ROWS))
    ratio = epoch.iloc[0] / epoch.iloc[1]
    first = table["what"] == EPOCH_ROWS[0]
    table.loc[first, "target"] = f"epoch / GEMM pass {ratio:.2f} <= 1.5"
    table.loc[first, "met"] = "yes" if ratio <= 1.5 else "no"
    return table


def _timed(what: str, cmd: list[str], cwd: Path, configs: int = 1) -> dict[str, Any]:
    """Run ``cmd``, failing loudly; return its wall time and peak RSS."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
        if proc.returncode not in (0,):
            raise SystemExit(f"bench-sweep: {' '.join(cmd)} exited {proc.returncode}:\n{output}")
    print(f"[bench-sweep] {what}: {seconds:.1f} s", file=sys.stderr)
    return {
        "what": what,
        "configs": configs,
        "wall s": seconds,
        "peak RSS MB": usage.ru_maxrss / 1024,
        "output": output,
    }


def _epoch_rows(project: Path) -> list[dict[str, Any]]:
    """One epoch of the default single run (train.json) against its floor: the same matrix
    products over the training split, X_b @ W and X_b^T G per batch of the configured size, on
    one BLAS thread, as the trainer runs them (median of 7 passes)."""
    import json

    import numpy as np
    import yaml
    from threadpoolctl import threadpool_limits

    from mnist_softmax.data.scaler import load_scaler, scaler_path
    from mnist_softmax.data.splits import load_split, split_path

    prepared = project / "data" / "prepared"
    X = load_scaler(scaler_path(prepared)).transform(load_split(split_path(prepared, "train")).X)
    W = np.zeros((X.shape[1], 10), np.float32)
    batch = yaml.safe_load((project / "params.yaml").read_text())["optimizer"]["batch_size"]
    with threadpool_limits(1, "blas"):  # as the trainer runs
        times = []
        for _ in range(7):
            started = time.perf_counter()
            for start in range(0, len(X), batch):
                X_b = X[start : start + batch]
                X_b.T @ (X_b @ W)
            times.append(time.perf_counter() - started)
    epoch = json.loads((project / "reports" / "train.json").read_text())["seconds_per_epoch"]
    gemm = float(np.median(times))
    return [
        {"what": EPOCH_ROWS[0], "configs": 1, "wall s": epoch, "peak RSS MB": np.nan, "output": ""},
        {"what": EPOCH_ROWS[1], "configs": 1, "wall s": gemm, "peak RSS MB": np.nan, "output": ""},
    ]


def _grid_size(overrides: list[str]) -> int:
    size = 1
    for override in overrides:
        size *= len(override.split("=", 1)[1].split(","))
    return size


def _set_yaml_key(path: Path, key: str, value: str) -> None:
    text, count = re.subn(rf"(?m)^{key}: *[^ #\n]+", f"{key}: {value}", path.read_text())
    if count != 1:
        raise SystemExit(f"bench-sweep: {key} not found in {path}")
    path.write_text(text)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mnist-softmax bench-sweep", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--project", default=".", help="the project to copy (default: cwd)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="cores for the sweeps (2)")
    parser.add_argument(
        "--quick", action="store_true", help="skip the 64-config grids (one process, cluster)"
    )
    parser.add_argument(
        "--cluster-only", action="store_true",
        help="only the 64-config grid on LocalClusters of 1 and 2 workers",
    )  # fmt: skip
    parser.add_argument("--out", help="also write the markdown table to this file")
    return parser.parse_args(argv)
