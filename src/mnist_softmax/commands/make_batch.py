"""``mnist-softmax make-batch NAME``: write one labelled batch into the inbox, sound or broken.

The images are MNIST's own (from ``--raw-dir``, where ``dvc repro fetch`` leaves them),
shifted and rotated at random, with optional label skew and label noise; ``--corrupt`` breaks
the batch in one named way so the validator's quarantine can be exercised. The batch appears in
``--inbox`` all at once (:func:`mnist_softmax.inbox.batch_maker.write_batch`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_softmax.errors import ConfigError
from mnist_softmax.inbox.batch_files import NAME_PATTERN
from mnist_softmax.inbox.batch_maker import (
    CORRUPTIONS,
    SOURCE_FILES,
    BatchSpec,
    draw_batch,
    load_source,
    write_batch,
)


def _classes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of labels like 3,5,8") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnist-softmax make-batch", description=__doc__)
    add = parser.add_argument
    add("name", metavar="NAME", help=f"batch folder name, {NAME_PATTERN.pattern}")
    add("--count", type=int, default=500, help="images in the batch (500)")
    add("--source", choices=tuple(SOURCE_FILES), default="train", help="MNIST part (train)")
    add("--shift", type=float, default=0.0, help="max shift per axis, pixels (0)")
    add("--rotate", type=float, default=0.0, help="max rotation, degrees (0)")
    add("--classes", type=_classes, help="draw only these labels, e.g. 3,5,8 (all)")
    add("--label-noise", type=float, default=0.0, help="share of labels made wrong, 0..1 (0)")
    add("--format", choices=("idx", "png"), default="idx", help="file format (idx)")
    add("--corrupt", choices=CORRUPTIONS, default="none", help="break the batch this way (none)")
    add("--seed", type=int, default=0, help="seed of the draw, shifts and noise (0)")
    add("--inbox", type=Path, default=Path("data/incoming"), help="inbox (data/incoming)")
    add("--raw-dir", type=Path, default=Path("data/raw"), help="MNIST IDX files (data/raw)")
    return parser


def parse_spec(argv: list[str] | None) -> tuple[argparse.Namespace, BatchSpec]:
    """Parse the arguments; a value out of range exits 2 with argparse's usage message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        spec = BatchSpec(
            name=args.name,
            count=args.count,
            source=args.source,
            shift_px=args.shift,
            rotate_deg=args.rotate,
            classes=args.classes,
            label_noise=args.label_noise,
            fmt=args.format,
            corrupt=args.corrupt,
            seed=args.seed,
        )
    except ConfigError as exc:  # BatchSpec checks the ranges, so they are written once
        parser.error(str(exc))
    return args, spec


def describe(path: Path, spec: BatchSpec, n_images: int) -> str:
    """The one line the command prints: where the batch went and how it was made."""
    labels = "0..9" if spec.classes is None else ",".join(map(str, spec.classes))
    noise = f", label noise {spec.label_noise:g}" if spec.label_noise else ""
    return (
        f"wrote {path}: {n_images} images ({spec.fmt}), labels {labels}{noise}, "
        f"shift {spec.shift_px:g} px, rotate {spec.rotate_deg:g} deg, corrupt {spec.corrupt}"
    )


def main(argv: list[str] | None = None) -> int:
    args, spec = parse_spec(argv)
    images, labels = load_source(args.raw_dir, spec.source)
    test_images = None
    if spec.corrupt == "test-leak":
        test_images = images if spec.source == "test" else load_source(args.raw_dir, "test")[0]
    batch_images, batch_labels = draw_batch(images, labels, spec)
    path = write_batch(batch_images, batch_labels, args.inbox, spec, test_images=test_images)
    print(describe(path, spec, 0 if spec.corrupt == "empty" else len(batch_images)))
    return 0
