"""MkDocs hook: the command reference page, rendered from the commands' own ``--help``."""

from __future__ import annotations

from mkdocs.structure.files import File, Files

from mnist_softmax.cli import reference_markdown

PAGE = "reference/commands.md"


def on_files(files: Files, config: dict) -> Files:
    """Add the generated page (never written into docs/, so it cannot go stale)."""
    files.append(File.generated(config, PAGE, content=reference_markdown()))
    return files
