"""A fresh git + DVC copy of the project: what the benchmarks, the chaos script and the tests
run in, so a clean clone's files are listed once (:data:`PROJECT_FILES`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

PROJECT_FILES = (
    "dvc.yaml",
    "params",
    "params.yaml",
    "pipeline",
    "src",
    ".dvc/config",
    ".dvcignore",
    "data/incoming/.gitkeep",  # the inbox: a dep of the ingest stage
    "data/batches.yaml",  # the (empty) manifest of accepted batches
)


def copy_project(src: Path, dest: Path) -> Path:
    """A fresh git repository holding the project's files (outputs are rebuilt by dvc repro)."""
    for name in PROJECT_FILES:
        if (src / name).is_dir():
            shutil.copytree(src / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dest / name)
    (dest / ".gitignore").write_text("mlflow/\n")
    (dest / "mlflow").mkdir()
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "bench project")
    return dest


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=clean_env(), check=True, capture_output=True)


def clean_env() -> dict[str, str]:
    """This environment without MLflow or DVC experiment variables: runs go to the copy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_EXP"))}
    env.setdefault("GIT_AUTHOR_NAME", "bench")
    env.setdefault("GIT_AUTHOR_EMAIL", "bench@example.com")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    return {**env, "DVC_NO_ANALYTICS": "1", "MPLBACKEND": "Agg"}
