"""The docs site builds strictly, its command reference is the commands' own --help, and the
README stays a short map."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_softmax.cli import COMMANDS, help_text

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`mkdocs build --strict` as `make docs` runs it, into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_every_page_of_the_nav_is_built(site):
    import yaml

    config = yaml.safe_load((REPO / "mkdocs.yml").read_text().replace("!!python", "#"))

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    for page in pages(config["nav"]):
        built = site / (
            "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        )
        assert built.is_file(), page
        assert len(built.read_text()) > 2000, page


def test_command_reference_is_each_command_s_own_help(site):
    html = (site / "reference/commands/index.html").read_text()
    for name in COMMANDS:
        assert f"usage: mnist-softmax {name}" in html, name
    usage = help_text("predict").splitlines()[0]
    assert usage.startswith("usage: mnist-softmax predict")


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The build the suite runs is strict: a page linking to a missing page fails it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [a page that does not exist](missing.md).\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: t\nstrict: true\n")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0 and "missing.md" in done.stderr


def test_readme_is_a_short_map_linking_into_the_docs():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, len(lines)
    text = "\n".join(lines)
    for target in ("docs/pipeline.md", "docs/tracking.md", "make docs"):
        assert target in text, target
