"""What the inbox holds at one moment: accepted, quarantined and waiting batches.

The ``ingest`` command and the retrain job both read it before and after ``dvc repro ingest``
to say what the run changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mnist_softmax.config import PathsConfig
from mnist_softmax.inbox.batch_files import inbox_folders
from mnist_softmax.inbox.batch_store import load_manifest


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
