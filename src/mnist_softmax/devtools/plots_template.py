"""Build the offline HTML template of `dvc plots show` (``plots.html_template`` in .dvc/config).

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so without internet its
``dvc_plots/index.html`` stays blank. This template inlines the three libraries, taken from the
npm registry with ``npm pack`` at install time (`make plots-template`), so the page needs
nothing but itself, wherever ``-o`` writes it. It has DVC's ``{plot_divs}`` and
``{refresh_tag}`` placeholders (dvc_render.html.HTML) and no ``{scripts}`` one, which is where
DVC would put its CDN ``<script src>`` tags.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from mnist_softmax.atomic import atomic_open
from mnist_softmax.errors import PipelineError

# exact versions (the majors DVC's own page uses): npm checks each tarball's integrity
PACKAGES = {"vega": "5.33.1", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}
DEFAULT_OUT = Path(".dvc/plots/template.html")
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{libraries}
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def _library(tarball: Path, name: str) -> str:
    """Return one inline ``<script>`` with the package's licence in a comment before it."""
    with tarfile.open(tarball) as tar:
        meta = json.load(tar.extractfile("package/package.json"))
        script = tar.extractfile(f"package/build/{name}.min.js").read().decode()
        names = tar.getnames()
        licence = (
            tar.extractfile("package/LICENSE").read().decode()
            if "package/LICENSE" in names
            else f"{meta['license']} licence, see {meta.get('homepage', meta['name'])}"
        )
    if "</script" in script or any(p in script for p in PLACEHOLDERS):
        raise PipelineError(f"{tarball.name}: its script cannot be inlined in an HTML template")
    header = f"{meta['name']} {meta['version']} ({meta['license']})\n{licence}"
    return f"<!--\n{header.replace('--', '- -')}\n-->\n<script>{script}</script>"


def build_template(out: Path, folder: Path) -> None:
    """Fetch the three packages with ``npm pack`` into ``folder`` and write the page to ``out``."""
    specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
    try:
        subprocess.run(["npm", "pack", "--silent", *specs], cwd=folder, check=True,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise PipelineError(f"npm pack {' '.join(specs)} failed: {detail}") from exc
    scripts = [_library(folder / f"{n}-{v}.tgz", n) for n, v in PACKAGES.items()]
    page = PAGE.format(libraries="\n".join(scripts), refresh_tag="{refresh_tag}",
                       plot_divs="{plot_divs}")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as handle:
        handle.write(page)


def main(argv: list[str]) -> int:
    """``python -m mnist_softmax.devtools.plots_template [OUT]``: build the template."""
    out = Path(argv[0]) if argv else DEFAULT_OUT
    try:
        with tempfile.TemporaryDirectory() as folder:
            build_template(out, Path(folder))
    except PipelineError as exc:
        print(f"plots-template: {exc}", file=sys.stderr)
        return 1
    print(f"plots-template: wrote {out} ({out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
