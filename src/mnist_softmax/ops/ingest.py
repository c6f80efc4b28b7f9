"""``mnist-softmax ingest``: check the inbox now, as ``dvc repro ingest`` (and retrain) would.

Runs the ingest stage through DVC, so ``dvc.lock`` records the new batches and the next
``dvc repro`` retrains on them, then prints what changed: batches accepted, quarantined (see
their ``REASON.txt``) and still waiting for their ``READY`` file.
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mnist_softmax.config import PathsConfig, load_or_compose
from mnist_softmax.data.batch_files import inbox_folders
from mnist_softmax.data.batch_store import load_manifest
from mnist_softmax.errors import PipelineError


@dataclass(frozen=True)
class InboxState:
    """Accepted batch names, quarantined folder names, and inbox folders without READY."""

    accepted: frozenset[str]
    quarantined: frozenset[str]
    waiting: frozenset[str]

    @classmethod
    def read(cls, paths: PathsConfig) -> InboxState:
        quarantine = Path(paths.quarantine_dir)
        return cls(
            frozenset(e.name for e in load_manifest(paths.batch_manifest)),
            frozenset(p.name for p in quarantine.iterdir()) if quarantine.is_dir() else frozenset(),
            frozenset(folder.name for folder in inbox_folders(Path(paths.incoming_dir))[1]),
        )

    def since(self, before: InboxState) -> dict[str, list[str]]:
        """What a run changed: newly accepted and quarantined batches, and those still waiting."""
        return {
            "accepted": sorted(self.accepted - before.accepted),
            "quarantined": sorted(self.quarantined - before.quarantined),
            "waiting": sorted(self.waiting),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-softmax ingest", description=__doc__)
    parser.parse_args(argv)
    paths = load_or_compose().paths
    before = InboxState.read(paths)
    code = subprocess.run(["dvc", "repro", "ingest"], check=False).returncode
    if code:
        raise PipelineError(f"`dvc repro ingest` failed with exit code {code}")
    changes = InboxState.read(paths).since(before)
    print("; ".join(f"{kind}: {', '.join(names) or 'none'}" for kind, names in changes.items()))
    for name in changes["quarantined"]:
        print(f"  see {Path(paths.quarantine_dir) / name / 'REASON.txt'}")
    return 0
