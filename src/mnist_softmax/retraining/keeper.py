"""The keeper: a small process between a retrain job and its pipeline, so nothing outlives the job.

A SIGKILL cannot be caught, so a job killed outright cannot stop the ``dvc`` it started; left
alone, that ``dvc`` (and its stage) trains on for tens of seconds, registers a version nobody
decides about, and does it with the job lock already free. The job therefore runs each pipeline
command through ``python -m mnist_softmax.retraining.keeper --parent PID -- CMD...``, in a
session of its own (a kill of the job's process group does not reach it). The keeper, using
what Linux gives for this:

- asks for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and checks at start that the
  parent is still there (it may have died before the request);
- makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``): every process below it that is
  orphaned (``dvc``'s stage when ``dvc`` dies) becomes its child, so none escapes its view;
- holds the job lock's file descriptor, passed to it by the job: the kernel releases the lock
  only when the keeper, the last holder, exits, after the last process below it is gone.

On SIGTERM or SIGINT while the job lives (the job forwards the signals it gets), it passes the
signal to everything below and waits for them; when the job is gone, it SIGKILLs everything
below at once: nobody is left to decide about what the pipeline would produce.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 30.0  # a live job's signal: how long the pipeline gets before SIGKILL


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def command(parent: int, cmd: list[str]) -> list[str]:
    """The command line that runs ``cmd`` under a keeper watching ``parent``."""
    return [
        sys.executable,
        "-m",
        "mnist_softmax.retraining.keeper",
        "--parent",
        str(parent),
        "--",
        *cmd,
    ]


def _below() -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process().children(recursive=True)
    return []


def _stop_all(signum: int, grace_s: float) -> None:
    """Send ``signum`` once to every process below, wait up to ``grace_s``, SIGKILL the rest.

    Loops until nothing is left below: orphans re-parent to us (subreaper) while we wait. Each
    process gets ``signum`` once only: a second SIGINT would cut short DVC's own clean-up.
    """
    deadline = time.monotonic() + grace_s
    signalled: set[int] = set()
    while procs := _below():
        late = time.monotonic() >= deadline
        for proc in procs:
            if late or proc.pid not in signalled:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(signal.SIGKILL if late else signum)
                signalled.add(proc.pid)
        _, alive = psutil.wait_procs(procs, timeout=min(1.0, max(deadline - time.monotonic(), 0.1)))
        if alive and late:
            psutil.wait_procs(alive, timeout=1.0)
    with contextlib.suppress(ChildProcessError):  # reap what psutil did not wait for
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnist_softmax.retraining.keeper")
    parser.add_argument("--parent", type=int, required=True, help="pid of the job to outlive not")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if os.getppid() != args.parent:  # the job died before PR_SET_PDEATHSIG took effect
        return 137
    child = subprocess.Popen(cmd)
    code = None
    while code is None:
        if stopping:
            orphaned = os.getppid() != args.parent
            _stop_all(signal.SIGKILL if orphaned else stopping[0], 0.0 if orphaned else GRACE_S)
            return 128 + stopping[0]
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = child.wait(timeout=0.2)
    _stop_all(signal.SIGKILL, 0.0)  # nothing may outlive the pipeline's main process
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
