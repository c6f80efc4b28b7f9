"""The drift report on real MNIST: no drift where there is none, and each kind when provoked.

Every expected value is computed here from the arrays, independently of the module.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.image import imread

from mnist_softmax.errors import DataError
from mnist_softmax.evaluation.charts import DPI
from mnist_softmax.evaluation.drift import (
    DRIFT_SIZE,
    build_drift_figure,
    coverage_drift,
    drift_report,
    plot_drift,
)
from mnist_softmax.inbox.batch_maker import load_source

NAMES = [str(c) for c in range(10)]


@pytest.fixture(scope="module")
def train(mnist_raw):
    images, labels = load_source(mnist_raw, "train")
    return images.reshape(60000, -1), labels


def subset(train, mask):
    return train[0][mask], train[1][mask].astype(np.int64)


def test_a_random_sample_shows_no_drift(train):
    mask = np.zeros(60000, dtype=bool)
    mask[np.random.default_rng(0).choice(60000, 2000, replace=False)] = True
    (new_X, new_y), (pool_X, pool_y) = subset(train, mask), subset(train, ~mask)
    report = drift_report(new_X, new_y, pool_X, pool_y, NAMES)
    assert report["labels"]["p_value"] > 0.01
    assert abs(report["ink"]["intensity_shift"]) < 0.01
    assert [report["labels"]["counts_new"][n] for n in NAMES] == np.bincount(new_y).tolist()
    assert report["n_new"] == 2000 and report["n_pool"] == 58000
    assert report["confidence"] is None


def test_label_skew_is_detected(train):
    mask = np.isin(train[1], [3, 5, 8])
    mask[np.flatnonzero(mask)[1000:]] = False
    new_X, new_y = subset(train, mask)
    report = drift_report(new_X, new_y, *subset(train, ~mask), NAMES)["labels"]
    assert report["p_value"] < 1e-6
    assert report["share_new"]["3"] == pytest.approx(np.mean(new_y == 3))
    assert report["dof"] == 9  # every class is in the pool: 2 x 10 table


def test_dimmer_ink_is_detected(train):
    mask = np.zeros(60000, dtype=bool)
    mask[:1500] = True
    new_X, new_y = subset(train, mask)
    dim = (new_X * 0.6).astype(np.uint8)
    pool_X, pool_y = subset(train, ~mask)
    ink = drift_report(dim, new_y, pool_X, pool_y, NAMES)["ink"]
    expected = dim.mean() / 255 - pool_X.mean() / 255
    assert ink["intensity_shift"] == pytest.approx(expected, abs=1e-4) and expected < -0.02
    assert ink["ink_fraction_new"] == pytest.approx(np.mean(dim > 127), abs=1e-5)
    assert ink["ks_p_value"] < 1e-6


def test_confidence_histograms_are_shares(train):
    rng = np.random.default_rng(1)
    new_c, test_c = rng.uniform(0.3, 1, 500), rng.uniform(0.8, 1, 900)
    X, y = subset(train, np.arange(60000) < 600)
    report = drift_report(X[:500], y[:500], X[500:], y[500:], NAMES, new_c, test_c, n_bins=5)
    conf = report["confidence"]
    assert sum(conf["hist_new"]) == pytest.approx(1) and sum(conf["hist_test"]) == pytest.approx(1)
    assert conf["mean_new"] == pytest.approx(new_c.mean())
    assert conf["shift"] == pytest.approx(new_c.mean() - test_c.mean())
    assert conf["hist_test"][:3] == [0, 0, 0] and len(conf["bin_edges"]) == 6
    json.dumps(report, allow_nan=False)  # plain types only: it goes to JSON and MLflow


@pytest.mark.parametrize(
    ("new_y", "words"),
    [
        (np.zeros(0, np.int64), "no images"),
        (np.zeros(3, np.int64), "3 labels"),
        (np.full(5, 10), "outside 0..9"),
    ],
)
def test_bad_input_is_one_data_error(train, new_y, words):
    X = train[0][: len(new_y) if len(new_y) != 3 else 5]
    with pytest.raises(DataError, match=words):
        drift_report(X, new_y, train[0][:10], train[1][:10], NAMES)


def test_the_figure_shows_the_report(train, tmp_path):
    X, y = subset(train, np.arange(60000) < 3000)
    conf = np.linspace(0.2, 1, 1000)
    report = drift_report(X[:1000], y[:1000], X[1000:], y[1000:], NAMES, conf, conf[::2])
    png = plot_drift(report, tmp_path / "drift.png")
    height, width = imread(png).shape[:2]
    assert (width, height) == (DRIFT_SIZE[0] * DPI, DRIFT_SIZE[1] * DPI)
    labels_ax, ink_ax, conf_ax = build_drift_figure(report).axes
    heights = [bar.get_height() for bar in labels_ax.patches]
    assert heights[:10] == pytest.approx([report["labels"]["share_new"][n] for n in NAMES])
    assert heights[10:] == pytest.approx([report["labels"]["share_pool"][n] for n in NAMES])
    assert f"{report['labels']['p_value']:.3g}" in labels_ax.get_title()
    assert next(b.get_height() for b in ink_ax.patches) == pytest.approx(
        report["ink"]["mean_intensity_new"]
    )
    assert "Confidence" in conf_ax.get_title()
    report["confidence"], report["labels"]["p_value"] = None, 0.0  # underflowed, not certain
    underflow_ax, _, empty = build_drift_figure(report).axes
    assert underflow_ax.get_title() == "Labels: chi-square p < 1e-300"
    assert [t.get_text() for t in empty.texts] == ["no champion: confidence not measured"]


def test_coverage_below_one_minus_alpha_is_flagged_per_batch_and_in_the_figure(train):
    per_batch = {"calm": {"n": 400.0, "coverage": 0.955, "mean_set_size": 1.0},
                 "rotated": {"n": 400.0, "coverage": 0.90, "mean_set_size": 1.3}}  # fmt: skip
    coverage = coverage_drift(per_batch, 0.05)
    assert coverage["target"] == pytest.approx(0.95) and coverage["drift"] is True
    assert [b["drift"] for b in coverage["batches"].values()] == [False, True]
    se = np.sqrt(0.05 * 0.95 / 400)
    assert coverage["batches"]["rotated"]["shortfall_se"] == pytest.approx(0.05 / se)
    assert coverage_drift({"calm": per_batch["calm"]}, 0.05)["drift"] is False
    X, y = subset(train, np.arange(60000) < 1200)
    report = drift_report(X[:200], y[:200], X[200:], y[200:], NAMES, coverage=coverage)
    json.dumps(report, allow_nan=False)
    title = build_drift_figure(report)._suptitle.get_text()
    assert "calm 0.955, rotated 0.900 DRIFT" in title and ">= 0.95" in title
    assert drift_report(X[:200], y[:200], X[200:], y[200:], NAMES)["coverage"] is None
