"""The benchmark runs end to end in quick mode and marks a baseline with time ratios."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from mnist_softmax.data.scaler import Scaler, save_scaler
from mnist_softmax.data.splits import Split, save_split
from mnist_softmax.devtools.bench import main, summarize

REPO = Path(__file__).resolve().parents[1]


def test_summarize_picks_baseline_on_validation():
    rows = [
        {"config": "sklearn C=1", "pixels": "deskewed", "val acc": 0.90, "test acc": 0.95,
         "fit s": 2.0},
        {"config": "sklearn C=0.1", "pixels": "deskewed", "val acc": 0.92, "test acc": 0.91,
         "fit s": 4.0},
        {"config": "sklearn 60k", "pixels": "deskewed", "val acc": 0.99, "test acc": 0.99,
         "fit s": 8.0},
        {"config": "default (optimizer=sgd) (10 ep)", "pixels": "deskewed", "val acc": 0.91,
         "test acc": 0.92, "fit s": 0.2},
        {"config": "sklearn C=0.1", "pixels": "raw", "val acc": 0.95, "test acc": 0.90,
         "fit s": 1.0},
    ]  # fmt: skip
    table = summarize(rows)
    assert table.loc[1, "config"].endswith("[baseline]")  # by val acc, on the configured pixels
    np.testing.assert_allclose(table["time / baseline"], [0.5, 1.0, 2.0, 0.05, 0.25])
    np.testing.assert_allclose(table["acc - baseline"], [0.04, 0.0, 0.08, 0.01, -0.01], atol=1e-12)
    assert list(table["met"]) == ["", "", "", "yes", ""]  # the default on configured pixels
    rows[3]["fit s"] = 0.21  # 0.0525 of the baseline's 4 s: over the 0.05 target
    assert list(summarize(rows)["met"]) == ["", "", "", "no", ""]
    rows[3]["fit s"], rows[3]["test acc"] = 0.2, 0.90  # fast enough, less accurate
    assert list(summarize(rows)["met"]) == ["", "", "", "no", ""]


def _prepare_digits(folder: Path) -> None:
    """Write scikit-learn's 8x8 digits as prepared splits (1000 train, 400 val, 397 test)."""
    X, y = load_digits(return_X_y=True)
    X = (X * 15).astype(np.uint8)
    train = Split(X[:1000], y[:1000])
    for name, split in (("train", train), ("val", Split(X[1000:1400], y[1000:1400]))):
        save_split(folder / f"{name}.npz", split)
    save_split(folder / "test.npz", Split(X[1400:], y[1400:]))
    save_scaler(folder / "scaler.npz", Scaler.fit(train.X, "standardize", 25.5))


def test_quick_bench_on_small_data(tmp_path, capsys):
    _prepare_digits(tmp_path)
    out = tmp_path / "bench.md"
    argv = ["--quick", "--no-isolate", "--prepared-dir", str(tmp_path), "--out", str(out)]
    overrides = ["optimizer.epochs=3", "data.image_shape=[8,8]"]
    assert main([*argv, "--params", str(REPO / "params"), *overrides]) == 0
    text = capsys.readouterr().out
    assert "[baseline]" in text and "default (optimizer=sgd) (3 ep)" in text
    provenance, table = out.read_text().split("\n\n", 1)  # the docs site includes this file
    assert provenance.startswith("Measured ") and "cores" in provenance
    assert table.strip() == text.strip()
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| ")]
    header, body = [c.strip() for c in rows[0]], rows[1:]
    assert len(body) == 4  # sklearn baseline, default config, both again on the other pixels
    pixels = [row[header.index("pixels")].strip() for row in body]
    assert pixels == ["raw", "raw", "deskewed", "deskewed"]  # the digits' scaler: raw
    assert all(float(row[header.index("test acc")]) > 0.85 for row in body)
    assert all(0 <= float(row[header.index("test ECE")]) < 0.2 for row in body)


def test_quick_bench_reports_a_sparsemax_models_support(tmp_path, capsys):
    """The sparsemax row says how many classes keep p > 0 (softmax: all 10)."""
    _prepare_digits(tmp_path)
    argv = ["--quick", "--no-isolate", "--prepared-dir", str(tmp_path), "--grid", "0.03"]
    argv += ["--params", str(REPO / "params"), "optimizer.epochs=3", "model=sparsemax"]
    argv += ["data.image_shape=[8,8]"]
    assert main(argv) == 0
    rows = [
        line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")
    ]
    header = [c.strip() for c in rows[0]]
    raw = [row for row in rows[1:] if row[header.index("pixels")].strip() == "raw"]
    support = {row[1].strip(): float(row[header.index("support")]) for row in raw}
    sparse, sklearn = (support[k] for k in sorted(support))  # "default ..." < "sklearn ..."
    assert sparse < 3 and sklearn == 10
