"""``mnist-softmax explore``: the interactive softmax page on the trained model, on loopback.

Loads the model (``--model`` path or MLflow URI; else champion > newest version >
``models/model.npz``: :mod:`mnist_softmax.tracking.model_source`), picks example images from
the test split when the workspace has one, and serves the page and its JSON API with werkzeug's
threaded server in this process (no worker processes, so nothing outlives it). Ctrl-C or
SIGTERM stops it with exit code 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, make_server, select_address_family

from mnist_softmax.config import PARAMS_FILE, load_or_compose
from mnist_softmax.data.splits import load_split, split_path
from mnist_softmax.errors import PipelineError
from mnist_softmax.explorer.app import create_app
from mnist_softmax.explorer.digit import DigitModel, pick_examples
from mnist_softmax.tracking.model_source import ModelSource, load_model_source

log = logging.getLogger(__name__)


def load_digit_model(source: ModelSource, prepared_dir: str | Path) -> DigitModel:
    """Bundle the model with examples from the workspace's test split, when it fits the model."""
    test_file = split_path(prepared_dir, "test")
    examples = {}
    if test_file.is_file():
        test = load_split(test_file)
        if test.X.shape[1] == source.model.W.shape[0]:
            examples = pick_examples(source.model, test)
        else:
            log.warning("%s does not fit the model's input: no example images", test_file)
    else:
        log.warning("%s not found (run `make run`): no example images", test_file)
    return DigitModel(source.model, source.temperature, source.source, examples, source.conformal)


def main(argv: list[str] | None = None) -> int:
    """Serve the explorer until Ctrl-C or SIGTERM; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="mnist-softmax explore",
        description="Serve the interactive softmax explorer on the trained model.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port, 0 for any free one (8050)")
    parser.add_argument("--model", help="model.npz path or MLflow model URI (default: champion)")
    parser.add_argument("--params", default=PARAMS_FILE, help="config naming the store and paths")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be from 0 to 65535, got {args.port}")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per slider move
    cfg = load_or_compose(args.params)
    source = load_model_source(args.model, cfg.tracking, cfg.paths)
    digit = load_digit_model(source, cfg.paths.prepared_dir)
    server = _bind(args.host, args.port, create_app(digit))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl-C
    url = f"http://{args.host}:{server.port}"
    sys.stdout.write(f"Explorer: {url}  (model {source.source}, T={source.temperature:.4g}; ")
    sys.stdout.write("Ctrl-C to stop)\n")
    sys.stdout.flush()
    server.serve_forever()  # returns on KeyboardInterrupt, with the socket closed
    log.info("stopped")
    return 0


def _bind(host: str, port: int, app: object) -> BaseWSGIServer:
    """Return werkzeug's threaded server on ``host:port``, or a one-line PipelineError.

    The socket is bound here, not by werkzeug, whose own bind prints two lines and exits.
    """
    try:
        sock = socket.create_server((host, port), family=select_address_family(host, port))
    except OSError as exc:
        raise PipelineError(
            f"cannot listen on {host}:{port} ({exc.strerror}): pick another with --port"
        ) from None
    with sock:  # the server holds its own duplicate of the descriptor
        return make_server(host, port, app, threaded=True, fd=sock.fileno())
