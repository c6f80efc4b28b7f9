"""train: data/prepared/{train,val,scaler}.npz -> models/model.npz, reports/train.json,
reports/curves.csv (the test split is never read here).
"""

from __future__ import annotations

from mnist_softmax.atomic import write_json
from mnist_softmax.config import Config
from mnist_softmax.data.scaler import load_scaler, scaler_path
from mnist_softmax.data.splits import load_split, split_path
from mnist_softmax.model.curves import write_curves
from mnist_softmax.model.model_file import save_model
from mnist_softmax.model.training import TRAIN_PARAMS, train
from mnist_softmax.stage import run_stage

# the config keys this stage reads: exactly its params: in dvc.yaml (tests/test_dvc_yaml.py)
PARAMS = TRAIN_PARAMS


def main(cfg: Config) -> None:
    prepared = cfg.paths.prepared_dir
    result = train(
        load_split(split_path(prepared, "train")),
        load_split(split_path(prepared, "val")),
        load_scaler(scaler_path(prepared)),
        cfg,
    )  # raises TrainingDivergedError before anything below is written
    save_model(cfg.paths.model, result.model)
    write_curves(cfg.paths.train_curves, result.history)
    write_json(cfg.paths.train_metrics, result.summary)


if __name__ == "__main__":
    run_stage("train", main, PARAMS)
