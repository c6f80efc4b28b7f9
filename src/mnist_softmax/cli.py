"""The ``mnist-softmax`` console command: one subcommand per operator task.

Subcommands import their module lazily, so ``mnist-softmax --help`` answers at once without
paying for mlflow's multi-second import. Each runs through
:func:`mnist_softmax.stage.run_command`: masked logging, one-line errors, the errors' exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module that implements it with ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("mnist_softmax.ops.bench", "time this project's trainers against scikit-learn"),
    "compare": ("mnist_softmax.ops.compare", "print a table of the last MLflow runs"),
    "ui": ("mnist_softmax.ops.ui", "start the MLflow UI on 127.0.0.1 for the project's store"),
    "retrain": (
        "mnist_softmax.ops.retrain",
        "scheduled retraining with champion/challenger promotion",
    ),
    "promote": (
        "mnist_softmax.ops.promote",
        "move the champion alias to a model version (rollback)",
    ),
    "history": ("mnist_softmax.ops.history", "list past retraining decisions"),
    "ingest": (
        "mnist_softmax.ops.ingest",
        "accept or quarantine the new batches in data/incoming/ (dvc repro ingest)",
    ),
    "make-batch": (
        "mnist_softmax.ops.make_batch",
        "write a demo batch (shifted/rotated digits, or a corrupt one) into data/incoming/",
    ),
    "explore": (
        "mnist_softmax.ops.explore",
        "serve the interactive softmax explorer on the trained model (127.0.0.1:8050)",
    ),
    "sweep": ("mnist_softmax.ops.sweep", "run a grid of configs (fast, or --queue), rank them"),
    "bench-sweep": (
        "mnist_softmax.ops.bench_sweep",
        "time sweeps and reruns in a temp copy of the project (prints a table)",
    ),
    "bench-stages": (
        "mnist_softmax.ops.bench_stages",
        "where dvc repro -f spends its time, per stage (start-up, imports, work, DVC)",
    ),
    "predict": ("mnist_softmax.ops.predict", "classify digit images, IDX files or .npy arrays"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``mnist-softmax <command> [args...]`` to the command's module."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="mnist-softmax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help(sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from mnist_softmax.stage import run_command  # config and yaml: not for --help

    module = importlib.import_module(COMMANDS[argv[0]][0])
    return run_command(argv[0], module.main, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
