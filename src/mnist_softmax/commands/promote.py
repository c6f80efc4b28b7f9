"""``mnist-softmax promote <version>``: point ``champion`` at a version by hand (rollback).

Takes the same lock as ``retrain`` so a manual promotion never races a scheduled job.
"""

from __future__ import annotations

import argparse

from mnist_softmax.config import load_config
from mnist_softmax.retraining.lock import LOCK_FILE, exclusive_lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-softmax promote", description=__doc__)
    parser.add_argument("version", help="registered model version to make the champion")
    args = parser.parse_args(argv)
    cfg = load_config()
    with exclusive_lock(LOCK_FILE):
        from mnist_softmax.tracking import registry

        name = cfg.tracking.registered_model
        with registry.tracking_errors(cfg.tracking):
            client = registry.client_for(cfg.tracking)
            registry.require_version(client, name, args.version)
            current = registry.alias_version(client, name)
            registry.move_champion(client, name, args.version, expected=current)
    before = "none" if current is None else f"v{current}"
    print(f"champion of {name}: {before} -> v{args.version} (previous: {before})")
    return 0
