"""ingest: data/incoming/<batch>/ -> data/batches/<batch>.npz + data/batches.yaml (manifest),
or data/quarantine/<batch>/ with REASON.txt. Reads data/raw's test images (leakage guard).
"""

from mnist_softmax.config import Config
from mnist_softmax.data.prepare import load_raw
from mnist_softmax.inbox.ingest import ingest
from mnist_softmax.stage import log, run_stage

# the config keys this stage reads: exactly its params: in dvc.yaml (tests/test_dvc_yaml.py)
PARAMS = ("data.files", "data.class_names", "data.image_shape", "data.inbox")


def main(cfg: Config) -> None:
    inbox = cfg.data.inbox
    limits = (inbox.min_images, inbox.max_images, 100 * inbox.holdout)
    log.info("inbox %s: batches of %d to %d images, %.0f%% of each held out",
             cfg.paths.incoming_dir, *limits)  # fmt: skip
    test = load_raw(cfg.paths.raw_dir, cfg.data, "test")
    result = ingest(cfg, test.X)
    log.info("inbox: %d accepted, %d quarantined, %d waiting for READY",
             len(result.accepted), len(result.quarantined), len(result.waiting))  # fmt: skip


if __name__ == "__main__":
    run_stage("ingest", main, PARAMS)
