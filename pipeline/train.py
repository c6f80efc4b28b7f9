"""train: data/prepared/{train,val,scaler}.npz -> models/model.npz, reports/train.json,
reports/curves.csv (the test split is never read here).
"""

from __future__ import annotations

from mnist_softmax.atomic import atomic_open, write_json
from mnist_softmax.config import Config
from mnist_softmax.dataset import load_scaler, load_split, scaler_path, split_path
from mnist_softmax.model import save_model
from mnist_softmax.stage import run_stage
from mnist_softmax.training import train


def main(cfg: Config) -> None:
    prepared = cfg.paths.prepared_dir
    result = train(
        load_split(split_path(prepared, "train")),
        load_split(split_path(prepared, "val")),
        load_scaler(scaler_path(prepared)),
        cfg,
    )  # raises TrainingDivergedError before anything below is written
    save_model(cfg.paths.model, result.model)
    with atomic_open(cfg.paths.train_curves) as handle:
        result.history.to_csv(handle, index=False)
    write_json(cfg.paths.train_metrics, result.summary)


if __name__ == "__main__":
    run_stage("train", main)
