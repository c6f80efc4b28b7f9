"""SIGTERM/SIGINT for a job that runs a pipeline in a child process: stop it, wait, say so.

Left alone, a SIGTERM kills the job but not its ``dvc repro`` child, which goes on training,
registers a model nobody decides about, and collides with the next job (the job lock died
with its holder). Each command runs under a keeper (:mod:`.keeper`), in a session of its own,
holding ``keep_fds`` (the job lock). Within :class:`Interruptible`, the first signal is
forwarded to the keeper alone, which passes it once to every process below it (DVC and its
stage), gives them ``keeper.GRACE_S``, SIGKILLs what is left and exits; the job waits for it,
then raises :class:`JobInterrupted`. With no command running, the signal raises at once.
Further signals are ignored until the block ends, so the job can still write its report. If
the job is killed outright, the keeper stops the pipeline by itself and releases the lock last.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from types import FrameType

from mnist_softmax.errors import PipelineError
from mnist_softmax.retraining import keeper

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class JobInterrupted(PipelineError):
    """The job received SIGTERM or SIGINT; exit code 128 + signal number, as a shell reports."""

    def __init__(self, signum: int) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}: pipeline stopped, champion untouched")
        self.exit_code = 128 + signum


class Interruptible:
    """A block in which SIGTERM/SIGINT end the job cleanly (see the module docstring)."""

    def __init__(self) -> None:
        self.keep_fds: tuple[int, ...] = ()  # descriptors the pipeline's keeper holds (the lock)
        self.signum: int | None = None
        self._child: subprocess.Popen | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interruptible:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            return  # already stopping: let the job finish its report
        self.signum = signum
        log.warning("received %s", signal.Signals(signum).name)
        child = self._child
        if child is not None and child.poll() is None:
            # to the keeper only: it signals each process below it once (a second SIGINT
            # would cut short DVC's own clean-up)
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)
            log.warning("forwarded %s to the pipeline's keeper", signal.Signals(signum).name)
            return  # run() notices after the keeper has exited
        raise JobInterrupted(signum)

    def check(self) -> None:
        """Raise JobInterrupted if a signal arrived (between steps of the job)."""
        if self.signum is not None:
            raise JobInterrupted(self.signum)

    def run(self, cmd: list[str], env: dict[str, str]) -> int:
        """Run ``cmd`` (its stdout to our stderr); on a signal, stop it and everything below."""
        self.check()
        self._child = subprocess.Popen(
            keeper.command(os.getpid(), cmd), env=env, stdout=sys.stderr,
            pass_fds=self.keep_fds, start_new_session=True,
        )  # fmt: skip
        try:
            code = self._child.wait()
        finally:
            self._child = None
        if self.signum is not None:  # the keeper exits after the last process below it
            raise JobInterrupted(self.signum)
        return code
