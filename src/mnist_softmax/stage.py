"""The shared entry point of every ``pipeline/<stage>.py``: config, logging, errors, timing.

A stage fails in one way only: one ``[stage] error: ...`` line on stderr and the exit code of the
:class:`PipelineError` subclass, so DVC shows the cause instead of a traceback. It sees only the
params it declares (:class:`mnist_softmax.scoped_config.ScopedConfig`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mnist_softmax.config import PARAMS_FILE, Config, load_config
from mnist_softmax.errors import PipelineError
from mnist_softmax.scoped_config import ScopedConfig

log = logging.getLogger("mnist_softmax")


def setup_logging(stage: str, level: int = logging.INFO) -> None:
    """Send library logs to stderr as ``[stage] message`` lines (DVC shows them as they come)."""
    logging.basicConfig(level=level, format=f"[{stage}] %(message)s", stream=sys.stderr, force=True)


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
    started = time.perf_counter()
    try:
        cfg = ScopedConfig(load_config(params_file), declared, stage)
        main(cfg)  # type: ignore[arg-type]  (a view with the Config interface)
        cfg.write_audit()
    except PipelineError as exc:
        log.error("error: %s", exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        log.error("interrupted")
        sys.exit(130)
    log.info("done in %.2f s", time.perf_counter() - started)
