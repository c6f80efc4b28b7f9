"""Accuracy on MNIST test digits rendered as scans, against the raw test accuracy.

Each test digit is blown up (3x to 8x), pasted off-centre on a larger sheet, written with dark
ink on white paper (optionally in colour), then brought back by ``normalize_digit``: the path
``mnist-softmax predict`` takes for a photo. Usage:

    python scripts/render_accuracy.py [--model models/model.npz] [-n 10000]
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_softmax.data.digit_image import normalize_digit
from mnist_softmax.data.idx import parse_idx
from mnist_softmax.model.model_file import load_model

MNIST = Path(__file__).resolve().parents[2] / "shared" / "mnist"


def render_scan(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return ``digit`` as an off-centre scan: scale 3-8x, margins 0-60 px, dark on light."""
    scale = int(rng.integers(3, 9))
    big = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    top, left, bottom, right = rng.integers(0, 61, size=4)
    sheet = np.zeros((28 * scale + top + bottom, 28 * scale + left + right), dtype=np.uint8)
    sheet[top : top + 28 * scale, left : left + 28 * scale] = np.asarray(big)
    return 255 - sheet


def idx(name: str) -> np.ndarray:
    return parse_idx(gzip.decompress((MNIST / name).read_bytes()), name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.npz")
    parser.add_argument("-n", type=int, default=10000)
    args = parser.parse_args()
    model = load_model(args.model)
    X, y = idx("t10k-images-idx3-ubyte.gz")[: args.n], idx("t10k-labels-idx1-ubyte.gz")[: args.n]
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    renders = np.stack([normalize_digit(render_scan(d, rng)) for d in X])
    seconds = time.perf_counter() - started
    for name, images in (("raw", X), ("rendered", renders)):
        acc = float(np.mean(model.predict_proba(images).argmax(axis=1) == y))
        print(f"{name:9s} accuracy {acc:.4f} on {len(y)} test digits")
    identity = float(np.mean([np.array_equal(normalize_digit(d), d) for d in X[:1000]]))
    print(
        f"normalize_digit: {len(y) / seconds:.0f} renders/s; raw digits unchanged: {identity:.3f}"
    )


if __name__ == "__main__":
    main()
