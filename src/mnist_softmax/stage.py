"""The shared entry points: :func:`run_stage` for every ``pipeline/<stage>.py``, and
:func:`run_command` for every console command (``mnist-softmax <command>``).

Both fail in one way only: one ``[name] error: ...`` line on stderr, credentials masked, and the
exit code of the :class:`PipelineError` subclass, so DVC or the operator sees the cause instead
of a traceback. A stage sees only the params it declares
(:class:`mnist_softmax.scoped_config.ScopedConfig`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from mnist_softmax.atomic import check_writable
from mnist_softmax.config import PARAMS_FILE, Config, load_config
from mnist_softmax.errors import PipelineError, Terminated
from mnist_softmax.redact import install_log_redaction
from mnist_softmax.scoped_config import ScopedConfig

log = logging.getLogger("mnist_softmax")


def setup_logging(stage: str, level: int = logging.INFO) -> None:
    """Send library logs to stderr as ``[stage] message`` lines (DVC shows them as they come).

    Every line, mlflow's included, has credentials masked (:mod:`mnist_softmax.redact`).
    """
    install_log_redaction()
    logging.basicConfig(level=level, format=f"[{stage}] %(message)s", stream=sys.stderr, force=True)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated("terminated by SIGTERM; temporary files removed, outputs unchanged")


def stage_outputs(stage: str, dvc_yaml: str | Path = "dvc.yaml") -> list[Path]:
    """Return the paths dvc.yaml lists as the stage's outs, metrics and plots (none without it)."""
    path = Path(dvc_yaml)
    if not path.is_file():
        return []
    entry = (yaml.safe_load(path.read_text()) or {}).get("stages", {}).get(stage) or {}
    items = [i for key in ("outs", "metrics", "plots") for i in entry.get(key) or []]
    return [Path(next(iter(i)) if isinstance(i, dict) else i) for i in items]


def check_outputs_writable(outputs: list[Path]) -> None:
    """Fail before any work when an output cannot be written (read-only or forbidden folder).

    Probes the nearest existing folder of each output (DVC removes outs before a stage runs),
    so a read-only ``models/`` is reported in a second, not after minutes of training.
    """
    for folder in sorted({_nearest_existing(out) for out in outputs}):
        check_writable(folder)


def _nearest_existing(out: Path) -> Path:
    folder = out if out.is_dir() else out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def run_stage(
    stage: str,
    main: Callable[[Config], None],
    declared: tuple[str, ...],
    params_file: str | Path = PARAMS_FILE,
) -> None:
    """Load and validate ``params.yaml``, run ``main(cfg)`` and exit with a meaningful code.

    ``main`` sees the config through a view that admits only the ``declared`` params (the
    stage's ``params:`` in dvc.yaml) and the paths.
    """
    setup_logging(stage)
    signal.signal(signal.SIGTERM, _raise_terminated)  # temp files go on SIGTERM too
    started = time.perf_counter()
    try:
        cfg = ScopedConfig(load_config(params_file), declared, stage)
        check_outputs_writable(stage_outputs(stage))
        main(cfg)  # type: ignore[arg-type]  (a view with the Config interface)
        cfg.write_audit()
    except (PipelineError, OSError, KeyboardInterrupt) as exc:
        sys.exit(_report_failure(exc))
    log.info("done in %.2f s", time.perf_counter() - started)
    exit_without_teardown()


def run_command(command: str, main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run ``mnist-softmax <command>``'s ``main(argv)`` and return its exit code.

    Logging goes to stderr as ``[command] message`` with credentials masked (a tracking URI
    such as ``http://user:secret@host`` never reaches the terminal), and any failure is one
    ``error:`` line with the code of :mod:`mnist_softmax.errors` (1 for an error that is not
    ours: its type and first line, the traceback at DEBUG level). argparse's own exits
    (``--help``: 0, a bad option: 2) pass through unchanged.
    """
    setup_logging(command)
    try:
        return int(main(argv) or 0)
    except (PipelineError, OSError, KeyboardInterrupt) as exc:
        return _report_failure(exc)
    except Exception as exc:  # a library's error: still one masked line
        log.debug("traceback of the error below", exc_info=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log.error("error: %s: %s", type(exc).__name__, first)
        return 1


def _report_failure(exc: PipelineError | OSError | KeyboardInterrupt) -> int:
    """Log ``exc`` as one ``error:`` line and return the exit code it stands for."""
    if isinstance(exc, PipelineError):
        log.error("error: %s", exc)
        return exc.exit_code
    if isinstance(exc, OSError):  # outside atomic_path: still one line naming the file
        log.error("error: %s: %s", exc.filename or "(no file name)", exc.strerror or exc)
        return 1
    log.error("interrupted")
    return 130


def exit_without_teardown() -> None:
    """Flush the logs and streams, then end the process with status 0 at once.

    The stage's outputs are closed and in place, and its MLflow run has ended: what is left
    is the interpreter's teardown of every imported module, measured at 0.2-1 s for the
    evaluate and log stages (matplotlib, mlflow) on every ``dvc repro``. atexit handlers do not
    run; none has work left by then (mlflow's ends an active run: there is none).
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
