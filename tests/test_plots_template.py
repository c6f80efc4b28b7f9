"""The offline page template of `dvc plots show` (src/mnist_softmax/devtools/plots_template.py)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

from mnist_softmax.devtools.plots_template import PACKAGES

TEMPLATE = REPO / ".dvc" / "plots" / "template.html"


def _build(out, path_env: str) -> subprocess.CompletedProcess:
    env = {"PATH": path_env, "HOME": str(out.parent)}
    cmd = [sys.executable, "-m", "mnist_softmax.devtools.plots_template", str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_without_npm_one_line_exit_1_and_no_file(tmp_path):
    out = tmp_path / "plots" / "template.html"
    out.parent.mkdir()
    out.write_text("kept")  # a previous template is not lost
    result = _build(out, str(tmp_path / "no-bin"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "npm pack" in result.stderr
    assert out.read_text() == "kept" and list(out.parent.iterdir()) == [out]


def test_shipped_template_inlines_the_libraries_and_has_dvcs_placeholders():
    """The template `make` builds: DVC's placeholders, every library inline, no CDN address."""
    html = TEMPLATE.read_text()
    assert "{plot_divs}" in html and "{refresh_tag}" in html and "{scripts}" not in html
    assert "<script src=" not in html and "cdn.jsdelivr" not in html
    for name, version in PACKAGES.items():
        assert f"{name} {version}" in html  # the licence header of each inlined package
