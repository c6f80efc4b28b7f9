"""Benchmark: this project's trainers against scikit-learn, side by side in one run.

Every fit sees the same prepared splits and the same standardized pixels. scikit-learn's
``LogisticRegression(solver="lbfgs")`` is fitted on the training split for each C of a grid; the
C with the best validation accuracy is the baseline for time ratios (chosen on validation only,
like this project's configs). A reference fit on all 60,000 training images (train + val, C=0.03,
the best known setting) shows what more data buys. Each fit runs in its own spawned process, so
its peak RSS is its own. Test NLL, Brier and the support size (classes with p > 0, at T = 1)
come from :func:`~mnist_softmax.evaluation.evaluate.score_logits` with each model's output kind
(scikit-learn's multinomial model is softmax), so a sparsemax model's sparsity shows beside its
accuracy; its NLL is ``inf`` once a test image gives its true class p = 0.

Both preprocessings are measured in the same run: the C grid and the project's configs use the
configured one (``data.deskew``, deskewed pixels by default); the reference C and the default
config are fitted on the other one too (the scaler refitted on those pixels), so the ``pixels``
column shows what deskewing buys each learner side by side.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mnist_softmax.atomic import atomic_open
from mnist_softmax.config import compose, config_from_container
from mnist_softmax.data.scaler import Scaler, load_scaler, scaler_path
from mnist_softmax.data.splits import Split, load_split, split_path

log = logging.getLogger(__name__)

C_GRID = (0.01, 0.03, 0.1, 1.0)
REFERENCE_C = 0.03
DEFAULT_LABEL = "default (optimizer=sgd)"
FIT_TARGET = 0.05  # issue 22: the default fit in at most 5% of the baseline's fit time
PROJECT_CONFIGS = {  # table label -> Hydra overrides of the default config
    DEFAULT_LABEL: [],
    "optimizer=lbfgs": ["optimizer=lbfgs"],
    "experiment=accurate": ["experiment=accurate"],
    "model=sparsemax": ["model=sparsemax"],
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; ``mnist-softmax bench --help`` lists options."""
    args = _parse(argv)
    grid = (REFERENCE_C,) if args.quick else tuple(args.grid)
    jobs = [{"kind": "sklearn", "C": c, "full": False} for c in grid]
    if not args.quick:
        jobs.append({"kind": "sklearn", "C": REFERENCE_C, "full": True})
    labels = [DEFAULT_LABEL] if args.quick else list(PROJECT_CONFIGS)
    jobs += [{"kind": "project", "label": k, "overrides": PROJECT_CONFIGS[k]} for k in labels]
    # the other preprocessing, side by side: the reference C and the default config
    jobs += [{**job, "other_pixels": True} for job in (jobs[grid.index(REFERENCE_C)],
             {"kind": "project", "label": labels[0], "overrides": []})]  # fmt: skip
    prepared = args.prepared_dir or _default_prepared(args.params, args.overrides)
    common = {"params": str(args.params.resolve()), "limit": args.limit, "prepared": prepared}
    results = []
    for job in jobs:
        job = {**job, **common, "overrides": [*job.get("overrides", []), *args.overrides]}
        results.append(_run_isolated(job) if args.isolate else run_job(job))
        log.info(
            "%s: test acc %.4f in %.2f s",
            *(results[-1][k] for k in ("config", "test acc", "fit s")),
        )
    print_table(summarize(results), args.out)
    return 0


def print_table(table: pd.DataFrame, out: str | None) -> None:
    """Print a benchmark table as Markdown (4 significant digits), and save it to ``out``.

    The saved file starts with when and where it was measured: the docs site includes these
    files as they are (``make bench`` writes ``docs/tables/bench.md``), so no table is copied
    by hand.
    """
    text = table.to_markdown(index=False, floatfmt=".4g")
    print(text)
    if out:
        with atomic_open(out) as file:
            file.write(f"{machine_line()}\n\n{text}\n")


def machine_line() -> str:
    """One line: the date, the machine's cores and the Python and NumPy the table ran on."""
    day = time.strftime("%Y-%m-%d")
    where = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    return f"Measured {day} on {where}, NumPy {np.__version__}."


def summarize(results: list[dict[str, Any]]) -> pd.DataFrame:
    """Mark the sklearn fit with the best validation accuracy as baseline; add time ratios."""
    table = pd.DataFrame(results)
    configured = table["pixels"] == table["pixels"].iloc[0]  # the first row is the C grid's
    sklearn = table["config"].str.startswith("sklearn") & ~table["config"].str.contains("60k")
    grid = table[sklearn & configured]
    base = grid["val acc"].idxmax()
    table.loc[base, "config"] += " [baseline]"
    table["time / baseline"] = table["fit s"] / table.loc[base, "fit s"]
    table["acc - baseline"] = table["test acc"] - table.loc[base, "test acc"]
    default = table["config"].str.startswith(DEFAULT_LABEL) & configured
    table["target"] = np.where(default, f"time / baseline <= {FIT_TARGET:g}, acc >= baseline", "")
    met = (table["time / baseline"] <= FIT_TARGET) & (table["acc - baseline"] >= 0)
    table["met"] = np.where(default, np.where(met, "yes", "no"), "")
    return table


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Fit one configuration and return its row of the table (runs in a worker process)."""
    train, val, test, scaler = _load(job["prepared"], job["limit"])
    if job.get("other_pixels"):
        scaler = _other_pixels(scaler, train, job)
    if job["kind"] == "sklearn":
        from sklearn.linear_model import LogisticRegression

        if job["full"]:
            train = Split(np.concatenate([train.X, val.X]), np.concatenate([train.y, val.y]))
        X = scaler.transform(train.X, np.float64)
        clf = LogisticRegression(C=job["C"], max_iter=1000)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a ConvergenceWarning shows up as n_iter = 1000
            clf.fit(X, train.y)
        seconds = time.perf_counter() - started
        logits = {name: clf.decision_function(scaler.transform(s.X, np.float64))
                  for name, s in (("val", val), ("test", test))}  # fmt: skip
        output = "softmax"
        size = "60k" if job["full"] else f"{len(train)}"
        label = f"sklearn lbfgs C={job['C']:g} ({size} images, {int(clf.n_iter_[0])} it)"
    else:
        from mnist_softmax.model.training import train as train_model

        cfg = config_from_container(compose(job["params"], job["overrides"]))
        started = time.perf_counter()
        result = train_model(train, val, scaler, cfg)
        seconds = time.perf_counter() - started
        logits = {"val": result.model.logits(val.X), "test": result.model.logits(test.X)}
        output = result.model.output
        unit = "it" if result.summary["optimizer"] == "lbfgs" else "ep"
        label = f"{job['label']} ({result.summary['epochs_run']} {unit})"
    from mnist_softmax.evaluation.evaluate import score_logits
    from mnist_softmax.model.numerics import accuracy
    from mnist_softmax.model.training import peak_rss_mb

    scores = score_logits(
        np.asarray(logits["test"], np.float64), test.y, 1.0, 15, "uniform", output
    )
    return {
        "config": label,
        "pixels": "deskewed" if scaler.deskew_shape else "raw",
        "val acc": accuracy(logits["val"], val.y),
        "test acc": accuracy(logits["test"], test.y),
        "test NLL": scores.values["nll"],
        "test ECE": scores.values["ece"],
        "test Brier": scores.values["brier"],
        "support": scores.values["support"],
        "fit s": seconds,
        "peak RSS MB": peak_rss_mb(),
    }


def _run_isolated(job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` in a fresh spawned process: its ru_maxrss is that fit's own peak."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_job, (job,))


def _other_pixels(scaler: Scaler, train: Split, job: dict[str, Any]) -> Scaler:
    """The scaler refitted on the training pixels with deskewing switched the other way."""
    data = config_from_container(compose(job["params"], job["overrides"])).data
    shape = None if scaler.deskew_shape else (data.image_shape[0], data.image_shape[1])
    return Scaler.fit(train.X, data.scaling, data.std_floor, shape)


def _load(prepared: str, limit: int | None) -> tuple[Split, Split, Split, Any]:
    train, val, test = (load_split(split_path(prepared, s)) for s in ("train", "val", "test"))
    if limit:
        train = Split(train.X[:limit], train.y[:limit])
    return train, val, test, load_scaler(scaler_path(prepared))


def _default_prepared(params: Path, overrides: list[str]) -> str:
    return str(Path(config_from_container(compose(params, overrides)).paths.prepared_dir).resolve())


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mnist-softmax bench", description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for this project's configs")
    parser.add_argument("--quick", action="store_true", help="sklearn C=0.03 and default only")
    parser.add_argument("--params", type=Path, default=Path("params"), help="Hydra config dir")
    parser.add_argument("--prepared-dir", help="prepared splits (default: paths.prepared_dir)")
    parser.add_argument("--limit", type=int, help="use only the first N training images")
    parser.add_argument("--grid", type=float, nargs="+", default=list(C_GRID), help="C values")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument(
        "--no-isolate", dest="isolate", action="store_false",
        help="fit in this process (faster start; RSS is then the process-wide peak)",
    )  # fmt: skip
    return parser.parse_args(argv)
