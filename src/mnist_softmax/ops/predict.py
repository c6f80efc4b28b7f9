"""``mnist-softmax predict FILE...``: classify digit images, IDX files and ``.npy`` arrays.

Each file is read on its own (:func:`mnist_softmax.data.digit_files.read_digits`); one that
cannot be read is reported in one ``error: <file>: <reason>`` line and the others are still
predicted; the exit code is then 3. The model is loaded through the registered pyfunc's own
code (:mod:`mnist_softmax.tracking.model_source`), so the command prints what serving answers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np
import pandas as pd

from mnist_softmax.config import PARAMS_FILE, load_or_compose
from mnist_softmax.data.digit_files import DigitBatch, read_digits
from mnist_softmax.errors import DataError, PipelineError
from mnist_softmax.stage import setup_logging

log = logging.getLogger(__name__)
FORMATS = ("table", "csv", "json")
TOP_K = 3


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < np.inf:
        raise argparse.ArgumentTypeError(f"{text} is not a number > 0")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mnist-softmax predict", description=__doc__)
    parser.add_argument("files", nargs="+", metavar="FILE", help="PNG/JPEG/BMP/GIF, IDX, .npy")
    parser.add_argument(
        "--model",
        help="MLflow model URI (models:/mnist-softmax@champion, runs:/...) or a model .npz; "
        "default: the champion, else the newest version, else models/model.npz",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output (table)")
    parser.add_argument(
        "--temperature", type=_positive, help="replace the calibrated temperature T (> 0)"
    )
    parser.add_argument("--params", default=PARAMS_FILE, help="config naming store and paths")
    return parser.parse_args(argv)


def predictions(batches: list[DigitBatch], proba: pd.DataFrame) -> list[dict]:
    """Return one record per image: file, index, label, probability, top 3, probabilities."""
    classes = [c for c in proba.columns if c != "label"]
    P = proba[classes].to_numpy()
    order = np.argsort(-P, axis=1, kind="stable")[:, :TOP_K]
    records, row = [], 0
    for batch in batches:
        for index in range(len(batch.pixels)):
            p, top = P[row], order[row]
            records.append(
                {
                    "file": batch.path,
                    "index": index if batch.indexed else None,
                    "label": classes[top[0]],
                    "probability": float(p[top[0]]),
                    "top3": [{"label": classes[k], "probability": float(p[k])} for k in top],
                    "probabilities": {c: float(v) for c, v in zip(classes, p, strict=True)},
                }
            )
            row += 1
    return records


def render(records: list[dict], fmt: str) -> str:
    """Format the records as an aligned table, CSV (one column per class) or a JSON array."""
    if fmt == "json":
        return json.dumps(records) + "\n"
    top3 = [" ".join(f"{t['label']}:{t['probability']:.4f}" for t in r["top3"]) for r in records]
    frame = pd.DataFrame(
        {
            "file": [r["file"] for r in records],
            "index": pd.array([r["index"] for r in records], dtype="Int64"),
            "label": [r["label"] for r in records],
            "probability": [r["probability"] for r in records],
            "top3": top3,
        }
    )
    if fmt == "csv":
        per_class = pd.DataFrame([r["probabilities"] for r in records], index=frame.index)
        return frame.join(per_class.add_prefix("p_")).to_csv(index=False)
    frame["index"] = ["" if r["index"] is None else str(r["index"]) for r in records]
    frame["probability"] = frame["probability"].map("{:.4f}".format)
    return frame.to_string(index=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("predict")
    try:
        cfg = load_or_compose(args.params)
        image_shape = tuple(cfg.data.image_shape)
        batches, failed = [], 0
        for path in args.files:
            try:
                batches.append(read_digits(path, image_shape))
            except DataError as exc:
                log.error("error: %s", exc)
                failed += 1
        if batches:
            from mnist_softmax.tracking import model_source

            source = args.model or model_source.default_model_uri(cfg)
            model = model_source.load(source, cfg, args.temperature)
            log.info("model %s", model.source)
            pixels = np.concatenate([_as_common_dtype(b.pixels, batches) for b in batches])
            sys.stdout.write(render(predictions(batches, model.predict(pixels)), args.format))
    except PipelineError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    return DataError.exit_code if failed else 0


def _as_common_dtype(pixels: np.ndarray, batches: list[DigitBatch]) -> np.ndarray:
    """Keep uint8 when every file is uint8 (the common case), else float64 for all."""
    if all(b.pixels.dtype == np.uint8 for b in batches):
        return pixels
    return pixels.astype(np.float64)
