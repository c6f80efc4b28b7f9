"""A run's name in MLflow: what its config changes in the shipped one, short enough for a legend.

MLflow's default names (``dazzling-vole-690``) say nothing in a chart legend, and DVC's
experiment names (``quiet-mews``) not much more. The shipped config is the tree in ``params/``
with its default options; a run that changes nothing is ``default``, one run with
``dvc exp run -S optimizer.lr=0.3 -S model.l2=0.001`` is ``optimizer.lr=0.3 model.l2=0.001``,
and one with ``-S optimizer=lbfgs`` is ``optimizer=lbfgs``. The full config stays in the run's
params; the name is only the difference, cut to :data:`MAX_CHARS`.

Pure YAML reading (no Hydra, no mlflow): each group option in ``params/<group>/<option>.yaml``
is compared with the run's subtree, so a switched group is named by its option and only the
values that differ from that option are listed after it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DEFAULT_NAME = "default"
MAX_CHARS = 60  # MLflow's legend and runs table cut longer names anyway
# where outputs go, which store, how the data is downloaded, the retrain rule: not what a run's
# model differs in (a test's own store or a mirror list would otherwise name every run)
IGNORED = ("paths", "tracking", "retrain", "data.mirrors", "data.timeout_s", "data.retries",
           "data.backoff_s", "data.max_file_mb", "data.attempt_s", "data.inbox")  # fmt: skip


def run_label(config: dict[str, Any], params_dir: str | Path) -> str:
    """Return what ``config`` changes in the shipped config of ``params_dir`` (``default`` if
    nothing); "" when ``params_dir`` holds no config to compare with.
    """
    root = Path(params_dir)
    main_file = root / "config.yaml"
    if not main_file.is_file():
        return ""
    shipped = yaml.safe_load(main_file.read_text()) or {}
    choices = _default_choices(shipped.pop("defaults", []))
    changes: list[str] = []
    for key, value in config.items():
        if key in choices:
            changes += _group_changes(key, value, root / key, choices[key])
        elif key in shipped:
            changes += _leaf_changes(key, value, shipped[key])
    return _shorten([c for c in changes if not c.startswith(IGNORED)]) or DEFAULT_NAME


def _default_choices(defaults: list[Any]) -> dict[str, str]:
    """``{"optimizer": "sgd", ...}`` from the defaults list (``_self_`` and nulls skipped)."""
    return {
        group: option
        for entry in defaults
        if isinstance(entry, dict)
        for group, option in entry.items()
        if option is not None
    }


def _group_changes(group: str, value: Any, folder: Path, default: str) -> list[str]:
    """Name the option ``value`` is closest to, then the values that differ from it."""
    options = {p.stem: yaml.safe_load(p.read_text()) or {} for p in sorted(folder.glob("*.yaml"))}
    if default not in options:
        return []
    flat = _flatten(value, group)

    def closeness(option: str) -> tuple[bool, int, bool]:
        reference = _flatten(options[option], group)
        same_keys = reference.keys() == flat.keys()
        return same_keys, sum(flat.get(k) == v for k, v in reference.items()), option == default

    best = max(options, key=closeness)
    switched = [] if best == default else [f"{group}={best}"]
    return switched + _leaf_changes(group, value, options[best])


def _leaf_changes(prefix: str, value: Any, reference: Any) -> list[str]:
    """``key=value`` for every leaf of ``value`` that differs from (or is absent in) the
    reference, in the config's own order."""
    theirs = _flatten(reference, prefix)
    return [f"{k}={v}" for k, v in _flatten(value, prefix).items() if theirs.get(k) != v]


def _flatten(node: Any, prefix: str) -> dict[str, str]:
    """Flatten to ``{"optimizer.lr": "0.3"}``; lists as JSON, numbers as Python prints them."""
    if isinstance(node, dict) and node:
        flat: dict[str, str] = {}
        for key, child in node.items():
            flat.update(_flatten(child, f"{prefix}.{key}"))
        return flat
    text = json.dumps(node, ensure_ascii=False) if isinstance(node, list | dict) else str(node)
    return {prefix: text}


def _shorten(changes: list[str]) -> str:
    """Join the changes; past :data:`MAX_CHARS`, keep the first ones and count the rest."""
    shown: list[str] = []
    for k, change in enumerate(changes):
        more = len(changes) - k
        candidate = " ".join([*shown, change])
        tail = f" +{more - 1} more" if more > 1 else ""
        if shown and len(candidate + tail) > MAX_CHARS:
            return " ".join(shown) + f" +{more} more"
        shown.append(change if len(change) <= MAX_CHARS else change[: MAX_CHARS - 3] + "...")
    return " ".join(shown)
