"""Benchmark: where the seconds of ``dvc repro -f`` go, per stage (``make bench-stages``).

In a temporary copy of the project (as ``bench-sweep`` makes it), after a first ``dvc repro``,
``dvc repro -f`` runs ``--repeat`` times with a ``python`` shim first on PATH that stamps each
stage process's start and end, so the stages' wall times are measured inside DVC's own run.
Per stage, medians over the repeats:

- start-up: ``python -c pass`` (the interpreter and site, the same for every stage);
- imports: importing ``pipeline/<stage>.py`` without running it, minus start-up;
- work: the stage's own ``done in`` line (config, loading, computing, writing; lazy imports);
- rest: the stage process's wall time minus those three (mostly interpreter exit);
- dvc: DVC's time from the end of this stage to the start of the next (hashing and caching
  its outputs, updating dvc.lock, checking the next stage), or to DVC's exit after the last.

The copy's ``src/`` comes first on PYTHONPATH, so ``--project`` may be an older checkout.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mnist_softmax.devtools.bench import print_table
from mnist_softmax.devtools.project_copy import clean_env, copy_project

_DONE = re.compile(r"^\[(\w+)\] done in ([0-9.]+) s$", re.MULTILINE)
SHIM = """#!/bin/sh
start=$(date +%s.%N)
"{python}" "$@"
status=$?
echo "$1 $start $(date +%s.%N)" >> "{log}"
exit $status
"""


def main(argv: list[str] | None = None) -> int:
    """Profile the stages of ``dvc repro -f`` and print the table."""
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        project = copy_project(Path(args.project).resolve(), Path(tmp) / "project")
        env = {**clean_env(), "PYTHONPATH": str(project / "src")}
        _run(["dvc", "repro"], project, env)
        runs = [_profiled_repro(project, env, Path(tmp) / f"shim{i}") for i in range(args.repeat)]
        startup = _median_wall([sys.executable, "-c", "pass"], project, env, args.repeat)
        imports = {
            stage: _median_wall([sys.executable, "-c", _IMPORT.format(stage)], project, env,
                                args.repeat) - startup
            for stage in runs[0]["stages"]
        }  # fmt: skip
    print_table(summarize(runs, startup, imports), args.out)
    return 0


_IMPORT = "import runpy; runpy.run_path('pipeline/{}.py', run_name='imported')"


def summarize(runs: list[dict], startup: float, imports: dict[str, float]) -> pd.DataFrame:
    """One row per stage (medians over the runs), a DVC start-up row and a total row."""
    rows = []
    for stage in runs[0]["stages"]:
        wall = statistics.median(r["stages"][stage]["wall"] for r in runs)
        work = statistics.median(r["stages"][stage]["work"] for r in runs)
        rows.append({
            "stage": stage, "start-up s": startup, "imports s": imports[stage], "work s": work,
            "rest s": wall - startup - imports[stage] - work,
            "dvc s": statistics.median(r["stages"][stage]["dvc"] for r in runs), "total s": 0.0,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    table["total s"] = table["start-up s"] + table["imports s"] + table["work s"]
    table["total s"] += table["rest s"] + table["dvc s"]
    launch = statistics.median(r["launch"] for r in runs)
    table.loc[len(table)] = {"stage": "dvc start-up", "dvc s": launch, "total s": launch}
    total = table.drop(columns="stage").sum(min_count=1)
    table.loc[len(table)] = {"stage": "sum", **total.to_dict()}
    wall = statistics.median(r["wall"] for r in runs)
    table.loc[len(table)] = {"stage": "dvc repro -f (wall)", "total s": wall}
    return table


def _profiled_repro(project: Path, env: dict[str, str], shim_dir: Path) -> dict:
    """Run ``dvc repro -f`` with the timing shim; return per-stage wall, work and DVC times."""
    shim_dir.mkdir()
    log = shim_dir / "stamps.txt"
    shim = shim_dir / "python"
    shim.write_text(SHIM.format(python=sys.executable, log=log))
    shim.chmod(0o755)
    env = {**env, "PATH": f"{shim_dir}{os.pathsep}{env['PATH']}"}
    started = time.time()
    output = _run(["dvc", "repro", "-f"], project, env)
    ended = time.time()
    stamps = [line.split() for line in log.read_text().splitlines()]
    names = [Path(s[0]).stem for s in stamps]
    begins = [float(s[1]) for s in stamps]
    ends = [float(s[2]) for s in stamps]
    work = {name: float(seconds) for name, seconds in _DONE.findall(output)}
    nexts = [*begins[1:], ended]
    stages = {
        name: {"wall": e - b, "work": work.get(name, 0.0), "dvc": n - e}
        for name, b, e, n in zip(names, begins, ends, nexts, strict=True)
    }
    return {"stages": stages, "launch": begins[0] - started, "wall": ended - started}


def _median_wall(cmd: list[str], cwd: Path, env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(max(repeat, 3)):
        started = time.perf_counter()
        _run(cmd, cwd, env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"bench-stages: {' '.join(cmd)} exited {proc.returncode}:\n"
                         f"{proc.stdout}{proc.stderr}")  # fmt: skip
    return proc.stdout + proc.stderr


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mnist-softmax bench-stages", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--project", default=".", help="the project to copy (default: cwd)")
    parser.add_argument("--repeat", type=int, default=3, help="dvc repro -f runs (median)")
    parser.add_argument("--out", help="also write the markdown table to this file")
    return parser.parse_args(argv)
