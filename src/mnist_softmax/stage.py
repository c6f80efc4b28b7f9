"""The shared entry point of every ``pipeline/<stage>.py``: config, logging, errors, timing.

A stage fails in one way only: one ``[stage] error: ...`` line on stderr and the exit code of the
:class:`PipelineError` subclass, so DVC shows the cause instead of a traceback.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mnist_softmax.config import PARAMS_FILE, Config, load_config
from mnist_softmax.errors import PipelineError

log = logging.getLogger("mnist_softmax")


def setup_logging(stage: str, level: int = logging.INFO) -> None:
    """Send library logs to stderr as ``[stage] message`` lines (DVC shows them as they come)."""
    logging.basicConfig(level=level, format=f"[{stage}] %(message)s", stream=sys.stderr, force=True)


def run_stage(stage: str, main: Callable[[Config], None], params: str | Path = PARAMS_FILE) -> None:
    """Load and validate ``params.yaml``, run ``main(cfg)`` and exit with a meaningful code."""
    setup_logging(stage)
    started = time.perf_counter()
    try:
        main(load_config(params))
    except PipelineError as exc:
        log.error("error: %s", exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        log.error("interrupted")
        sys.exit(130)
    log.info("done in %.2f s", time.perf_counter() - started)
