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
LABEL = "label"  # the pyfunc's label column (tracking.pyfunc.LABEL; importing it costs mlflow)
SET = "set"  # the pyfunc's prediction-set column (tracking.pyfunc.SET): a list of class names


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
        "--temperature",
        type=_positive,
        help="replace the calibrated temperature T (> 0); drops the prediction sets, whose "
        "threshold holds for the calibrated T only",
    )
    parser.add_argument("--params", default=PARAMS_FILE, help="config naming store and paths")
    return parser.parse_args(argv)


def predictions(batches: list[DigitBatch], proba: pd.DataFrame) -> pd.DataFrame:
    """Return one row per image: file, index, label, probability, top3, set, then ``p_<class>``.

    ``index`` is the image's position inside an IDX / ``.npy`` file (empty for an image
    file); ``top3`` holds ``[[class, p], ...]``, the three most probable classes; ``set`` is
    the prediction set, a list of class names (the column is absent when the model has no
    conformal predictor). Class names are any text (commas, colons, quotes), so they are never
    joined into one string here.
    """
    classes = [c for c in proba.columns if c not in (LABEL, SET)]
    P = proba[classes].to_numpy()
    top = np.argsort(-P, axis=1, kind="stable")[:, :TOP_K]
    top_p = np.take_along_axis(P, top, axis=1)
    names = np.asarray(classes, dtype=object)
    sizes = [len(b.pixels) for b in batches]
    index = np.concatenate([np.arange(n) for n in sizes])
    indexed = np.repeat([b.indexed for b in batches], sizes)
    top3 = [list(zip(cs.tolist(), qs.tolist(), strict=True))
            for cs, qs in zip(names[top], top_p, strict=True)]  # fmt: skip
    frame = pd.DataFrame(
        {
            "file": np.repeat([b.path for b in batches], sizes),
            "index": pd.Series(index, dtype="Int64").where(indexed),
            "label": names[top[:, 0]],
            "probability": top_p[:, 0],
            "top3": top3,
        }
    )
    if SET in proba.columns:
        frame[SET] = list(proba[SET])
    return frame.join(pd.DataFrame(P, columns=[f"p_{c}" for c in classes]))


def render(table: pd.DataFrame, fmt: str) -> str:
    """Format the predictions as an aligned table, CSV or one JSON array of objects.

    CSV writes ``top3`` and ``set`` as JSON text (``[["7", 0.9974], ...]``, ``["3", "5"]``):
    one cell a reader can parse whatever the class names hold; the table shows
    ``7 (0.9974)  3 (0.0023)`` for people, and the set as JSON text too; JSON has real arrays.
    """
    sets = {SET: table[SET].map(_json_text)} if SET in table.columns else {}
    if fmt == "csv":
        return table.assign(top3=table["top3"].map(_json_text), **sets).to_csv(index=False)
    if fmt == "json":
        return _json_text([_record(row) for row in table.to_dict("records")]) + "\n"
    columns = ["file", "index", "label", "probability", "top3"] + [SET] * bool(sets)
    shown = table.assign(**sets)[columns].copy()
    shown["top3"] = shown["top3"].map(lambda top: "  ".join(f"{c} ({p:.4f})" for c, p in top))
    shown["index"] = shown["index"].astype("string").fillna("")
    shown["probability"] = shown["probability"].map("{:.4f}".format)
    return shown.to_string(index=False) + "\n"


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _record(row: dict) -> dict:
    """One JSON object: the row with ``probabilities`` (class -> p) and a structured top 3."""
    probabilities = {k[2:]: v for k, v in row.items() if k.startswith("p_")}
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])[:TOP_K]  # stable
    top3 = [{"label": label, "probability": p} for label, p in ranked]
    index = None if pd.isna(row["index"]) else int(row["index"])
    keep = {"file": row["file"], "index": index, "label": row["label"]}
    sets = {SET: list(row[SET])} if SET in row else {}
    return {**keep, "probability": row["probability"], "top3": top3, **sets,
            "probabilities": probabilities}  # fmt: skip


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

            model = model_source.load(args.model, cfg.tracking, cfg.paths, args.temperature)
            log.info("model %s", model.source)
            pixels = np.concatenate([_as_common_dtype(b.pixels, batches) for b in batches])
            table = predictions(batches, model.predict(pixels))
            sys.stdout.write(render(table, args.format))
    except PipelineError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    return DataError.exit_code if failed else 0


def _as_common_dtype(pixels: np.ndarray, batches: list[DigitBatch]) -> np.ndarray:
    """Keep uint8 when every file is uint8 (the common case), else float64 for all."""
    if all(b.pixels.dtype == np.uint8 for b in batches):
        return pixels
    return pixels.astype(np.float64)
