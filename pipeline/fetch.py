"""fetch: data.mirrors + data.files -> data/raw/ (verified, decompressed IDX files).

Mirrors in $DATA_MIRROR (comma-separated, e.g. file:///path/to/mnist) are tried first.
"""

from mnist_softmax.config import Config
from mnist_softmax.download import RemoteFile, RetryPolicy, fetch_file, mirrors_with_override
from mnist_softmax.stage import log, run_stage


def main(cfg: Config) -> None:
    data = cfg.data
    mirrors = mirrors_with_override(data.mirrors)
    policy = RetryPolicy(data.timeout_s, data.retries, data.backoff_s)
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        spec = getattr(data.files, key)
        path = fetch_file(RemoteFile(spec.name, spec.sha256), mirrors, cfg.paths.raw_dir, policy)
        log.info("%s ok", path)


if __name__ == "__main__":
    run_stage("fetch", main)
