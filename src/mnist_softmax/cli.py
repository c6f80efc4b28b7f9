"""The ``mnist-softmax`` console command: one subcommand per operator task.

Subcommands import their module lazily, so ``mnist-softmax --help`` answers at once without
paying for mlflow's multi-second import. Each runs through
:func:`mnist_softmax.stage.run_command`: masked logging, one-line errors, the errors' exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

# subcommand -> (module that implements it with ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("mnist_softmax.devtools.bench", "time this project's trainers against scikit-learn"),
    "compare": ("mnist_softmax.commands.compare", "print a table of the last MLflow runs"),
    "ui": ("mnist_softmax.commands.ui", "start the MLflow UI on 127.0.0.1 for the project's store"),
    "retrain": (
        "mnist_softmax.retraining.retrain",
        "scheduled retraining with champion/challenger promotion",
    ),
    "promote": (
        "mnist_softmax.commands.promote",
        "move the champion alias to a model version (rollback)",
    ),
    "history": ("mnist_softmax.retraining.history", "list past retraining decisions"),
    "ingest": (
        "mnist_softmax.commands.ingest",
        "accept or quarantine the new batches in data/incoming/ (dvc repro ingest)",
    ),
    "make-batch": (
        "mnist_softmax.commands.make_batch",
        "write a demo batch (shifted/rotated digits, or a corrupt one) into data/incoming/",
    ),
    "explore": (
        "mnist_softmax.commands.explore",
        "serve the interactive softmax explorer on the trained model (127.0.0.1:8050)",
    ),
    "sweep": ("mnist_softmax.sweeps.sweep", "run a grid of configs (fast, or --queue), rank them"),
    "bench-sweep": (
        "mnist_softmax.devtools.bench_sweep",
        "time sweeps and reruns in a temp copy of the project (prints a table)",
    ),
    "bench-stages": (
        "mnist_softmax.devtools.bench_stages",
        "where dvc repro -f spends its time, per stage (start-up, imports, work, DVC)",
    ),
    "bench-conformal": (
        "mnist_softmax.devtools.conformal_bench",
        "prediction sets of every conformal method, MAPIE and sparsemax's support (table)",
    ),
    "predict": (
        "mnist_softmax.commands.predict",
        "classify digit images, IDX files or .npy arrays",
    ),
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


def help_text(command: str) -> str:
    """Return ``mnist-softmax <command> --help`` as a fresh process prints it (80 columns).

    A subprocess, not an in-process call: it is the text a user sees, start-up included, and
    a command whose ``--help`` fails raises here instead of documenting a stack trace.
    """
    done = subprocess.run(
        [sys.executable, "-m", "mnist_softmax.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    if done.returncode != 0:
        failed = f"mnist-softmax {command} --help exited {done.returncode}"
        raise RuntimeError(f"{failed}: {done.stderr}")
    return done.stdout


def reference_markdown() -> str:
    """Return the command reference page: each command's one-line purpose and its ``--help``.

    The docs site renders this at build time (``docs/hooks.py``), so the reference cannot
    drift from the commands.
    """
    with ThreadPoolExecutor(max_workers=4) as pool:
        helps = dict(zip(COMMANDS, pool.map(help_text, COMMANDS), strict=True))
    lines = [
        "# Command reference",
        "",
        "Generated from each command's own `--help` when the site is built.",
        "",
        "| command | what it does |",
        "|---|---|",
        *[f"| [`{name}`](#{name}) | {purpose} |" for name, (_, purpose) in COMMANDS.items()],
    ]
    for name, text in helps.items():
        lines += ["", f"## {name}", "", "```text", text.rstrip(), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
