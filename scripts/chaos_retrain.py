"""Chaos for scheduled retraining: kill ``mnist-softmax retrain`` at random moments, check it holds.

    python scripts/chaos_retrain.py --cycles 50 --seed 7

In a fresh copy of the project (its own git + DVC repository and MLflow store, the MNIST files
from $DATA_MIRROR), after one normal job that makes a champion, each cycle:

1. drops a new batch in the inbox (`mnist-softmax make-batch`; one in four is broken);
2. starts `mnist-softmax retrain` with varied overrides (so decisions differ), in a session of
   its own;
3. kills it at a random moment with one of: SIGKILL of the job alone, SIGKILL of its process
   group, SIGTERM, SIGINT, or the OOM killer's choice (SIGKILL of the largest process of the job);
4. checks the invariants: no process of the job left 5 s after it died; the lock free; the
   champion a version a finished job promoted, or unchanged; every batch dropped so far accepted
   once (manifest and store agree), quarantined, or still waiting, never lost or stored twice;
   the previous job's runs no longer RUNNING (this job, the next one, cleaned them).

After the last cycle one more job runs unharmed, then: no run left RUNNING, and `dvc repro`
brings `dvc status` back to clean. One line per cycle, a summary table at the end; the first
broken invariant stops the script with exit 1 and the seed that reproduces it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
KILLS = ("SIGKILL job", "SIGKILL group", "SIGTERM", "SIGINT", "OOM killer")
OVERRIDES = (  # varied, so that some challengers win and some lose
    (),
    ("optimizer.epochs=3",),
    ("optimizer.epochs=2", "optimizer.lr=0.05"),
    ("optimizer.epochs=1", "optimizer.lr=0.001"),
    ("model.l2=0.002", "optimizer.epochs=4"),
)
BROKEN = ("wrong-magic", "labels-out-of-range", "truncated-gzip", "test-leak")
LINGER_S = 5.0  # what the issue allows a process of the job after the job died
NAME = "mnist-softmax"


class InvariantBroken(Exception):
    """One invariant does not hold: the message says which, and what was seen."""


@dataclass
class Cycle:
    number: int
    batch: str
    broken: bool
    overrides: tuple[str, ...]
    kill: str
    at_s: float
    exit_code: int | None = None
    decision: str = ""


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="chaos-retrain-") as tmp:
        project = Path(args.project) if args.project else _make_project(Path(tmp))
        env = _env(project)
        _run(["dvc", "repro"], project, env)
        _run(["mnist-softmax", "retrain"], project, env)  # v1 becomes champion
        dropped: list[str] = []
        cycles: list[Cycle] = []
        try:
            for number in range(1, args.cycles + 1):
                cycle = _one_cycle(number, rng, project, env, dropped, args.max_kill_s)
                cycles.append(cycle)
                _check_cycle(project, cycle, dropped)
                print(_line(cycle), flush=True)
            _final_checks(project, env, dropped)
        except InvariantBroken as exc:
            print(f"INVARIANT BROKEN in cycle {len(cycles)}: {exc}", flush=True)
            print(f"reproduce: python scripts/chaos_retrain.py --cycles {args.cycles} "
                  f"--seed {args.seed}", flush=True)  # fmt: skip
            return 1
        print(_summary(cycles).to_string(index=False))
        print(f"all invariants held over {len(cycles)} cycles (seed {args.seed})")
    return 0


def _one_cycle(
    number: int, rng: random.Random, project: Path, env: dict, dropped: list[str], max_s: float
) -> Cycle:
    broken = rng.random() < 0.25
    batch = f"chaos-{number:03d}"
    corrupt = rng.choice(BROKEN) if broken else "none"
    _run(["mnist-softmax", "make-batch", batch, "--count", "300", "--rotate", "15",
          "--seed", str(number), "--corrupt", corrupt], project, env)  # fmt: skip
    dropped.append(batch)
    overrides = rng.choice(OVERRIDES)
    kill, at_s = rng.choice(KILLS), round(rng.uniform(0.5, max_s), 1)
    cycle = Cycle(number, batch, broken, overrides, kill, at_s)
    cmd = ["mnist-softmax", "retrain", *(a for o in overrides for a in ("-S", o))]
    job = subprocess.Popen(cmd, cwd=project, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    tree: set[int] = {job.pid}
    deadline = time.monotonic() + at_s
    while time.monotonic() < deadline and job.poll() is None:
        tree |= _descendants(job.pid)
        time.sleep(0.05)
    if job.poll() is None:
        tree |= _descendants(job.pid)
        _kill(job, kill, tree)
    else:
        cycle.kill = "none (finished first)"
    cycle.exit_code = job.wait(timeout=120)
    tree |= _project_processes(project)  # anything of the job's that still runs
    _no_process_left(project, tree, cycle)
    if cycle.kill.startswith("none") and cycle.exit_code != 0:  # nothing harmed it
        raise InvariantBroken(f"an unharmed job exited {cycle.exit_code}: a kill left the "
                              "project in a state the next job cannot recover from")  # fmt: skip
    return cycle


def _kill(job: subprocess.Popen, kill: str, tree: set[int]) -> None:
    if kill == "SIGKILL job":
        job.send_signal(signal.SIGKILL)
    elif kill == "SIGKILL group":
        os.killpg(job.pid, signal.SIGKILL)
    elif kill in ("SIGTERM", "SIGINT"):
        job.send_signal(getattr(signal, kill))
    else:  # the OOM killer picks the process with the most memory
        procs = [p for p in (_proc(pid) for pid in tree) if p is not None]
        sizes = {}
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                sizes[proc] = proc.memory_info().rss
        if sizes:
            max(sizes, key=sizes.get).send_signal(signal.SIGKILL)


def _no_process_left(project: Path, tree: set[int], cycle: Cycle) -> None:
    deadline = time.monotonic() + LINGER_S
    while True:
        alive = [p for p in (_proc(pid) for pid in tree) if p is not None and _running(p)]
        if not alive:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in alive)
            raise InvariantBroken(f"{cycle.kill}: processes of the job alive {LINGER_S:g} s "
                                  f"after it ended: {names}")  # fmt: skip
        time.sleep(0.2)


def _check_cycle(project: Path, cycle: Cycle, dropped: list[str]) -> None:
    _lock_is_free(project)
    report = _last_report(project) or {}
    cycle.decision = report.get("decision", "?")
    _champion_was_promoted(project)
    _batches_agree(project, dropped)
    if report.get("champion_known"):  # the job got past ending the runs dead jobs left
        job = report["retrain_id"]
        left = [r for r in _runs(project, "attributes.status = 'RUNNING'")
                if r.data.tags.get("mnist_softmax.retrain_id") != job]  # fmt: skip
        if left:
            raise InvariantBroken(f"{len(left)} run(s) of earlier jobs still RUNNING")


def _lock_is_free(project: Path) -> None:
    with (project / ".retrain.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvariantBroken("the job is gone but .retrain.lock is still held") from None
        fcntl.flock(handle, fcntl.LOCK_UN)


def _champion_was_promoted(project: Path) -> None:
    client = _client(project)
    try:
        version = client.get_model_version_by_alias(NAME, "champion")
    except Exception as exc:
        raise InvariantBroken(f"no champion: {str(exc).splitlines()[0]}") from None
    decision = version.tags.get("retrain.decision")
    if decision != "promoted":
        raise InvariantBroken(f"champion v{version.version} has retrain.decision={decision}")


def _batches_agree(project: Path, dropped: list[str]) -> None:
    manifest = yaml.safe_load((project / "data/batches.yaml").read_text()) or {}
    names = [entry["name"] for entry in manifest.get("batches") or []]
    if len(names) != len(set(names)):
        raise InvariantBroken(f"a batch is in the manifest twice: {sorted(names)}")
    stored = sorted(p.stem for p in (project / "data/batches").glob("*.npz"))
    if stored != sorted(names):
        raise InvariantBroken(f"manifest {sorted(names)} and store {stored} disagree")
    inbox = {p.name for p in (project / "data/incoming").iterdir() if p.is_dir()}
    quarantined = {p.name.split(".")[0] for p in (project / "data/quarantine").glob("*")}
    for batch in dropped:
        places = [batch in names, batch in inbox, batch in quarantined]
        if sum(places) != 1:
            raise InvariantBroken(f"batch {batch}: accepted/waiting/quarantined = {places}")


def _final_checks(project: Path, env: dict, dropped: list[str]) -> None:
    _run(["mnist-softmax", "retrain"], project, env, ok=(0, 1, 3))
    if running := _runs(project, "attributes.status = 'RUNNING'"):
        raise InvariantBroken(f"{len(running)} run(s) still RUNNING after an unharmed job")
    _batches_agree(project, dropped)
    _run(["dvc", "repro"], project, env)
    status = _run(["dvc", "status"], project, env).stdout
    if "changed" in status or "modified" in status:
        raise InvariantBroken(f"dvc status not clean after dvc repro:\n{status}")


def _summary(cycles: list[Cycle]) -> pd.DataFrame:
    table = pd.DataFrame([vars(c) for c in cycles])
    rows = []
    for kill, group in table.groupby("kill"):
        rows.append({
            "kill": kill, "cycles": len(group),
            "at s (min/median/max)": f"{group.at_s.min():.1f}/{group.at_s.median():.1f}/"
                                     f"{group.at_s.max():.1f}",
            "decisions": ", ".join(f"{d} {n}" for d, n in Counter(group.decision).items()),
            "broken batches": int(group.broken.sum()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _line(cycle: Cycle) -> str:
    sets = " ".join(f"-S {o}" for o in cycle.overrides) or "(defaults)"
    kind = "broken" if cycle.broken else "sound"
    return (f"cycle {cycle.number:3d}: {cycle.batch} ({kind}), {sets}, {cycle.kill} at "
            f"{cycle.at_s:.1f} s -> exit {cycle.exit_code}, report {cycle.decision}: "
            "invariants hold")  # fmt: skip


# --- helpers ------------------------------------------------------------------------------


def _make_project(tmp: Path) -> Path:
    sys.path.insert(0, str(REPO / "src"))
    from mnist_softmax.devtools.project_copy import copy_project

    return copy_project(REPO, tmp / "project")


def _env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    venv = Path(sys.executable).parent
    env["PATH"] = f"{venv}{os.pathsep}{env.get('PATH', '')}"
    mirror = REPO.parent / "shared" / "mnist"
    if "DATA_MIRROR" not in env and mirror.is_dir():
        env["DATA_MIRROR"] = mirror.as_uri()
    env.update(DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", MPLBACKEND="Agg")
    for key in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{key}_NAME", "chaos")
        env.setdefault(f"GIT_{key}_EMAIL", "chaos@example.com")
    return env


def _run(cmd: list[str], cwd: Path, env: dict, ok: tuple[int, ...] = (0,)):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode not in ok:
        raise InvariantBroken(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc


def _client(project: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{project / 'mlflow' / 'mlflow.db'}")


def _runs(project: Path, query: str) -> list:
    client = _client(project)
    experiment = client.get_experiment_by_name(NAME)
    return client.search_runs([experiment.experiment_id], query, max_results=1000)


def _last_report(project: Path) -> dict | None:
    import json

    reports = sorted((project / "reports" / "retrain").glob("*.json"), key=os.path.getmtime)
    return json.loads(reports[-1].read_text()) if reports else None


def _descendants(pid: int) -> set[int]:
    with contextlib.suppress(psutil.Error):
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    return set()


def _project_processes(project: Path) -> set[int]:
    found = set()
    for proc in psutil.process_iter(["cwd"]):
        if (proc.info.get("cwd") or "").startswith(str(project)) and proc.pid != os.getpid():
            found.add(proc.pid)
    return found


def _proc(pid: int) -> psutil.Process | None:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid)
    return None


def _running(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.status() != psutil.STATUS_ZOMBIE
    return False


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-kill-s", type=float, default=40.0,
                        help="latest kill moment after the job's start, seconds")  # fmt: skip
    parser.add_argument("--project", help="an existing project copy (default: a fresh one)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
