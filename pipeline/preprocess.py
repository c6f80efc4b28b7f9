"""preprocess: data/raw/ + data/batches/ (accepted batches, data/batches.yaml) ->
data/prepared/{train,val,test,scaler}.npz + reports/data.json.
"""

from mnist_softmax.atomic import write_json
from mnist_softmax.config import Config
from mnist_softmax.data.prepare import data_report, prepare
from mnist_softmax.data.scaler import save_scaler, scaler_path
from mnist_softmax.data.splits import save_split, split_path
from mnist_softmax.inbox.batch_store import load_batches
from mnist_softmax.stage import log, run_stage

# the config keys this stage reads: exactly its params: in dvc.yaml (tests/test_dvc_yaml.py)
PARAMS = (
    "data.files",
    "data.class_names",
    "data.image_shape",
    "data.val_size",
    "data.split_seed",
    "data.scaling",
    "data.std_floor",
    "data.deskew",
)


def main(cfg: Config) -> None:
    batches = load_batches(cfg.paths.batches_dir, cfg.paths.batch_manifest)
    prepared = prepare(cfg.paths.raw_dir, cfg.data, batches)
    if batches:
        log.info("training pool: MNIST + %d batch(es): %s", len(batches),
                 ", ".join(b.name for b in batches))  # fmt: skip
    for name in ("train", "val", "test"):
        split = getattr(prepared, name)
        save_split(split_path(cfg.paths.prepared_dir, name), split)
        log.info("%s: %d images", name, len(split))
    save_scaler(scaler_path(cfg.paths.prepared_dir), prepared.scaler)
    write_json(cfg.paths.data_report, data_report(prepared, cfg.data.class_names, batches))


if __name__ == "__main__":
    run_stage("preprocess", main, PARAMS)
