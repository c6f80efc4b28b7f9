"""compose: params/ (Hydra tree) -> params.yaml, validated.

Plain `dvc repro` does not run Hydra, so this stage recomposes params.yaml whenever params/
changes. Under `dvc exp run`, DVC has already composed params.yaml with the `-S` overrides
(DVC_EXP_NAME is set): then the file is only validated. If it is invalid (`-S
optimizer.lr=abc`), it is rewritten from params/ alone before the stage fails, so no invalid
params.yaml stays in the workspace to break the next `retrain` or `dvc repro`.
"""

import os
import sys

from mnist_softmax.atomic import atomic_open
from mnist_softmax.config import (
    CONFIG_DIR,
    PARAMS_FILE,
    compose,
    config_from_container,
    load_config,
    to_yaml,
)
from mnist_softmax.errors import ConfigError, PipelineError
from mnist_softmax.stage import log, setup_logging


def main(overrides: list[str]) -> None:
    if os.environ.get("DVC_EXP_NAME") and not overrides:
        try:
            load_config(PARAMS_FILE)
        except ConfigError:
            write_params([])  # put back the valid params.yaml of params/, then fail
            raise
        log.info("%s composed by dvc exp run; validated", PARAMS_FILE)
        return
    write_params(overrides)


def write_params(overrides: list[str]) -> None:
    """Compose, validate, then write params.yaml atomically (a bad value changes nothing)."""
    composed = compose(CONFIG_DIR, overrides)
    config_from_container(composed)  # a bad value stops here, before params.yaml changes
    with atomic_open(PARAMS_FILE) as handle:
        handle.write("# Generated from params/ by pipeline/compose.py: edit params/, not this.\n")
        handle.write(to_yaml(composed))
    log.info("wrote %s from %s/", PARAMS_FILE, CONFIG_DIR)


if __name__ == "__main__":
    setup_logging("compose")
    try:
        main(sys.argv[1:])
    except PipelineError as exc:
        log.error("error: %s", exc)
        sys.exit(exc.exit_code)
