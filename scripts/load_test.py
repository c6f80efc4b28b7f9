"""Load figure for the team tracking server: runs per minute from concurrent loggers, and what
happens to runs in flight when PostgreSQL restarts.

Each worker process logs complete runs the way the log stage does (about 60 params, 100 final and
per-epoch metrics in batched requests, five artifact files through the proxy, one registered
model version) for ``--seconds``. With ``--restart-db S`` the PostgreSQL under the server is
restarted (down S seconds) a third of the way in. Afterwards every run a client saw succeed is
looked up on the server: a run reported FINISHED but absent or not FINISHED there is "lost".

    export MLFLOW_TRACKING_USERNAME=... MLFLOW_TRACKING_PASSWORD=...
    scripts/tracking-server start
    python scripts/load_test.py --uri http://127.0.0.1:5050 --procs 4 --seconds 60
    python scripts/load_test.py --uri http://127.0.0.1:5050 --procs 4 --seconds 60 --restart-db 5

``--shape sweep-child`` logs runs shaped like a sweep's child runs instead (three requests: create,
one ``log_batch`` of params, metrics, curves and tags, terminate; no artifacts, no model version):
with ``--procs 1`` the rate one sweep client logs at, the figure docs/cluster.md's scaling model
uses for the MLflow side of a cluster sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "tracking-server"
EXPERIMENT, MODEL = "load-test", "load-test-model"


def _log_one_run(client, experiment_id: str, worker: int, folder: Path) -> str:
    """Log one run shaped like the pipeline's; return its id (raises on any failure)."""
    from mlflow.entities import Metric, Param, RunStatus

    run = client.create_run(experiment_id, tags={"worker": str(worker)})
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        params = [Param(f"group{i % 6}.key{i}", str(i * 0.1)) for i in range(60)]
        metrics = [Metric(f"test/m{i}", i / 100, now, 0) for i in range(40)]
        metrics += [Metric(f"curve/{k}", e / 10, now, e) for k in range(6) for e in range(10)]
        client.log_batch(run_id, metrics=metrics, params=params)
        for path in sorted(folder.iterdir()):
            client.log_artifact(run_id, str(path), artifact_path="reports")
        client.create_model_version(MODEL, f"runs:/{run_id}/reports", run_id=run_id)
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    except Exception:
        client.set_terminated(run_id, "FAILED")  # may fail too if the server is down: then RUNNING
        raise
    return run_id


def _log_one_child_run(client, experiment_id: str, worker: int, folder: Path) -> str:
    """Log one run shaped like a sweep's child run (tracking/sweep_runs.py): three requests."""
    from mlflow.entities import Metric, Param, RunTag

    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    params = [Param(f"group{i % 6}.key{i}", str(i * 0.1)) for i in range(60)]
    metrics = [Metric(f"test/m{i}", i / 100, now, 0) for i in range(40)]
    metrics += [Metric(f"curve/{k}", e / 10, now, e) for k in range(6) for e in range(10)]
    tags = [RunTag(f"lineage.tag{i}", "x" * 40) for i in range(15)]
    client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    client.set_terminated(run_id, "FINISHED")
    return run_id


SHAPES = {"pipeline": _log_one_run, "sweep-child": _log_one_child_run}


def _worker(args: tuple[str, str, int, float, mp.Queue, str]) -> None:
    uri, experiment_id, worker, deadline, results, shape = args
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, size in enumerate((200_000, 50_000, 20_000, 5_000, 2_000)):  # PNGs, CSVs, JSON
            (folder / f"file{i}.bin").write_bytes(os.urandom(size))
        while time.time() < deadline:
            start = time.time()
            try:
                run_id = SHAPES[shape](client, experiment_id, worker, folder)
                results.put({"ok": True, "run_id": run_id, "t": start, "s": time.time() - start})
            except Exception as exc:  # report, never hide: the summary counts these
                message = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                results.put({"ok": False, "error": message, "t": start, "s": time.time() - start})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--restart-db", type=float, default=None, metavar="SECONDS_DOWN")
    parser.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="pipeline",
        help="what each run looks like: a pipeline run, or a sweep's child run",
    )
    args = parser.parse_args(argv)
    if not args.uri or not args.uri.startswith("http://127.0.0.1"):
        parser.error("--uri must be the loopback team server (http://127.0.0.1:<port>)")
    os.environ["MLFLOW_TRACKING_URI"] = args.uri
    from mlflow.tracking import MlflowClient

    client = MlflowClient(args.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    if not client.search_registered_models(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)

    results: mp.Queue = mp.get_context("spawn").Queue()
    deadline = time.time() + args.seconds
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=_worker, args=((args.uri, experiment_id, w, deadline, results, args.shape),)
        )
        for w in range(args.procs)
    ]
    started = time.time()
    for proc in procs:
        proc.start()
    restart = None
    if args.restart_db is not None:
        restart = threading.Timer(args.seconds / 3, _restart_db, (args.restart_db,))
        restart.start()
    rows = []
    while any(p.is_alive() for p in procs) or not results.empty():
        with contextlib.suppress(queue.Empty):
            rows.append(results.get(timeout=1))
    for proc in procs:
        proc.join()
    if restart:
        restart.join()
    elapsed = time.time() - started
    print(json.dumps(_summarize(client, rows, elapsed, args), indent=2, sort_keys=True))
    return 0


def _restart_db(seconds_down: float) -> None:
    print(f"[load_test] restarting PostgreSQL ({seconds_down:.0f} s down)", file=sys.stderr)
    subprocess.run([str(SCRIPT), "restart-db", str(seconds_down)], check=True)


def _summarize(client, rows: list[dict], elapsed: float, args: argparse.Namespace) -> dict:
    ok = [r for r in rows if r["ok"]]
    failed = [r for r in rows if not r["ok"]]
    lost = []
    for row in ok:  # every run a client saw succeed must be on the server, FINISHED
        try:
            if client.get_run(row["run_id"]).info.status != "FINISHED":
                lost.append(row["run_id"])
        except Exception:
            lost.append(row["run_id"])
    seconds = sorted(r["s"] for r in ok)
    return {
        "procs": args.procs,
        "shape": args.shape,
        "seconds": round(elapsed, 1),
        "restart_db_seconds_down": args.restart_db,
        "runs_finished": len(ok),
        "runs_failed_with_error": len(failed),
        "errors": sorted({r["error"] for r in failed}),
        "runs_lost": len(lost),
        "runs_per_minute": round(60 * len(ok) / elapsed, 1),
        "seconds_per_run_median": round(seconds[len(seconds) // 2], 2) if seconds else None,
        "seconds_per_run_max": round(seconds[-1], 2) if seconds else None,
    }


if __name__ == "__main__":
    sys.exit(main())
