"""Each stage imports only what its work needs: interpreter start-up and imports were most of
``dvc repro``'s time (scikit-learn ~1 s, scipy.optimize ~0.3 s, mlflow ~1.5 s per process).

The stage scripts are imported in a fresh interpreter, as DVC starts them, without running
``main``; the heavy libraries a stage does not need at import time must stay out of
``sys.modules`` (scikit-learn's split is imported by preprocess when it splits, scipy.optimize
by calibrate when it searches T). No timing here: which modules load is what fails.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

STAGES = ("compose", "fetch", "ingest", "preprocess", "train", "calibrate", "evaluate", "log")
HEAVY = ("sklearn", "scipy.optimize", "mlflow", "matplotlib", "pandas")
ALLOWED = {  # stage -> the heavy libraries its imports may load
    "train": {"pandas"},  # the curves table
    "evaluate": {"matplotlib", "pandas"},  # figures, DVC plots tables
    "log": {"mlflow", "pandas"},
}


def _heavy_imports(stage: str) -> set[str]:
    code = (
        "import json, runpy, sys; "
        f"runpy.run_path('pipeline/{stage}.py', run_name='imported'); "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("stage", STAGES)
def test_stage_imports_no_heavy_library_it_does_not_need(stage):
    loaded = _heavy_imports(stage)
    assert loaded <= ALLOWED.get(stage, set()), (
        f"pipeline/{stage}.py imports {sorted(loaded - ALLOWED.get(stage, set()))} at start-up: "
        "import them where they are used"
    )
