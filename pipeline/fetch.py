"""fetch: data.mirrors + data.files -> data/raw/ (verified, decompressed IDX files).

Mirrors in $DATA_MIRROR (comma-separated, e.g. file:///path/to/mnist) are tried first.
"""

from mnist_softmax.config import Config
from mnist_softmax.data.download import fetch_dataset
from mnist_softmax.stage import log, run_stage

# the config keys this stage reads: exactly its params: in dvc.yaml (tests/test_dvc_yaml.py)
PARAMS = (
    "data.mirrors",
    "data.files",
    "data.timeout_s",
    "data.retries",
    "data.backoff_s",
    "data.max_file_mb",
    "data.attempt_s",
)


def main(cfg: Config) -> None:
    for path in fetch_dataset(cfg.data, cfg.paths.raw_dir):
        log.info("%s ok", path)


if __name__ == "__main__":
    run_stage("fetch", main, PARAMS)
