"""Latency and throughput of ``mlflow models serve`` for a registered version.

Starts the server (``--env-manager local``, one worker) on a free loopback port, then sends
real MNIST test images: single-image requests one after another (p50/p99 latency) and
1000-image requests (images/s), as JSON ``inputs`` and as CSV. Usage, from the repo root:

    python scripts/bench_serving.py [--model models:/mnist-softmax@champion] [--requests 200]

Default model: the champion, else the newest version in the project's store.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from mnist_softmax.commands.ui import stop_server, wait_ready
from mnist_softmax.config import load_or_compose
from mnist_softmax.data.idx import parse_idx
from mnist_softmax.tracking.store import resolve_store

MNIST = Path(__file__).resolve().parents[2] / "shared" / "mnist"


def post(url: str, body: bytes, content_type: str) -> float:
    """Send one request and return its wall time in seconds (raises on a non-200 answer)."""
    request = urllib.request.Request(url, body, {"Content-Type": content_type})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
    return time.perf_counter() - started


def bodies(X: np.ndarray) -> dict[str, tuple[bytes, str]]:
    frame = pd.DataFrame(X.astype(int))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return {
        "json inputs": (json.dumps({"inputs": X.tolist()}).encode(), "application/json"),
        "csv": (buffer.getvalue().encode(), "text/csv"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model URI (default: champion, else newest version)")
    parser.add_argument("--requests", type=int, default=200, help="single-image requests")
    parser.add_argument("--batches", type=int, default=10, help="1000-image requests")
    args = parser.parse_args()
    cfg = load_or_compose()
    from mnist_softmax.tracking.model_source import default_model_uri

    model = args.model or default_model_uri(cfg)
    raw = gzip.decompress((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    X = parse_idx(raw, "t10k").reshape(-1, 784)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": resolve_store(cfg.tracking).uri}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # its uvicorn
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "--env-manager", "local",
           "-m", model, "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
    started = time.perf_counter()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, **quiet)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(proc, base, timeout_s=180)
        print(f"{model}: server ready in {time.perf_counter() - started:.1f} s")
        url = f"{base}/invocations"
        for kind, (body, ctype) in bodies(X[:1]).items():
            post(url, body, ctype)  # warm-up
            times = [post(url, bodies(X[i : i + 1])[kind][0], ctype) for i in range(args.requests)]
            p50, p99 = np.percentile(np.array(times) * 1000, [50, 99])
            print(f"1 image, {kind}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({args.requests} requests)")
        for kind, (body, ctype) in bodies(X[:1000]).items():
            times = [post(url, body, ctype) for _ in range(args.batches)]
            rate = 1000 / np.median(times)
            print(f"1000 images, {kind}: {rate:.0f} images/s (median of {args.batches})")
    finally:
        stop_server(proc)


if __name__ == "__main__":
    main()
