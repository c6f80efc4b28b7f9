"""``mnist-softmax ingest``: check the inbox now, as ``dvc repro ingest`` (and retrain) would.

Runs the ingest stage through DVC, so ``dvc.lock`` records the new batches and the next
``dvc repro`` retrains on them, then prints what changed: batches accepted, quarantined (see
their ``REASON.txt``) and still waiting for their ``READY`` file.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from mnist_softmax.config import load_or_compose
from mnist_softmax.errors import PipelineError
from mnist_softmax.inbox.state import InboxState


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
