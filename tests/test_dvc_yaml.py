"""dvc.yaml is exact: each stage's deps and params are what its code imports and reads.

DVC reruns a stage only when a listed dep or param changes. A source file missing from
``deps`` or a key missing from ``params`` lets ``dvc repro`` serve a stale output (a renamed class
kept its old name in the model file); an extra one reruns work for nothing. Both lists are
derived here from the code: the deps from the import graph of ``pipeline/<stage>.py``
(every ``mnist_softmax`` import, lazy ones included, transitively), the params from the
``PARAMS`` each script declares, which :mod:`mnist_softmax.scoped_config` enforces at run time
(an undeclared read stops the stage; the end-to-end test checks every declared key is read).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml
from shipped import shipped_config

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "mnist_softmax"
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = list(DVC_YAML["stages"])


def _module_file(name: str) -> Path | None:
    """Return the source file of module ``name`` of the package (None for packages/others)."""
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def _imported_modules(path: Path) -> set[str]:
    """Return the package modules ``path`` imports anywhere in its body (lazy imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # submodules, if any
    return {name for name in found if _module_file(name) is not None}


def source_deps(script: Path) -> set[str]:
    """Return the repo-relative source files ``script`` needs: itself and its imports' closure."""
    seen: set[Path] = {script}
    todo = [script]
    while todo:
        for module in _imported_modules(todo.pop()):
            file = _module_file(module)
            if file not in seen:
                seen.add(file)
                todo.append(file)
    return {p.relative_to(REPO).as_posix() for p in seen}


def declared_params(stage: str) -> tuple[str, ...]:
    """Return the ``PARAMS`` tuple of ``pipeline/<stage>.py`` (imported, not executed as main)."""
    spec = importlib.util.spec_from_file_location(
        f"stage_{stage}", REPO / "pipeline" / f"{stage}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.PARAMS)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_are_exactly_the_sources_it_imports(stage):
    listed = {d for d in DVC_YAML["stages"][stage].get("deps", []) if d.endswith(".py")}
    needed = source_deps(REPO / "pipeline" / f"{stage}.py")
    assert listed == needed, (
        f"dvc.yaml stage {stage}: missing deps {sorted(needed - listed)}, "
        f"extra deps {sorted(listed - needed)}"
    )


@pytest.mark.parametrize("stage", [s for s in STAGES if s != "compose"])
def test_stage_params_are_exactly_the_keys_it_declares(stage):
    listed = DVC_YAML["stages"][stage].get("params", [])
    declared = declared_params(stage)
    assert sorted(listed) == sorted(declared), f"dvc.yaml stage {stage} params vs PARAMS"
    cfg = shipped_config().to_dict()
    for key in declared:  # each names a real key or group of the config
        node = cfg
        for part in key.split("."):
            assert part in node, f"{stage}: PARAMS names {key}, which the config lacks"
            node = node[part]


def test_compose_depends_on_the_whole_tree():
    assert "params" in DVC_YAML["stages"]["compose"]["deps"]


def test_dvc_yaml_spells_the_configured_paths():
    """dvc.yaml and params/paths must agree, or DVC would track files the code never writes."""
    declared: set[str] = set()
    for stage in DVC_YAML["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                declared.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    paths = vars(shipped_config().paths)
    # the inbox is the ingest stage's input (a dep); quarantine and drift reports are written
    # by people's tools and the retrain job, outside the pipeline
    assert {paths[k] for k in ("quarantine_dir", "drift_dir")}.isdisjoint(declared)
    assert paths["incoming_dir"] in DVC_YAML["stages"]["ingest"]["deps"]
    outside = ("incoming_dir", "quarantine_dir", "drift_dir")
    staged = {Path(v).as_posix() for k, v in paths.items() if k not in outside}
    assert staged == declared - {"params.yaml"}


def test_only_the_tracking_subpackage_imports_mlflow():
    """mlflow costs seconds to import: it stays behind one door (log stage, ops' lazy use)."""
    offenders = []
    for path in (SRC / PACKAGE).rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        if any(name.split(".")[0] == "mlflow" for name in names):
            offenders.append(path.relative_to(SRC / PACKAGE).as_posix())
    assert offenders and all(o.startswith("tracking/") for o in offenders), offenders


def test_package_inits_hold_only_a_docstring():
    """Deps list modules, not packages: an __init__.py with code would be an unlisted dep."""
    for init in (SRC / PACKAGE).rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), (
            init
        )
