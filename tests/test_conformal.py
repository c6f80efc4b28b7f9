"""Split conformal sets: the guarantee on exchangeable data, MAPIE's sets, the file, its faults.

Synthetic data is drawn so that the model is calibrated by construction (labels sampled from
its own probabilities): calibration and test images are then exchangeable, and every method
must cover at least 1 - alpha on average over many draws of the held-out set.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from shipped import conformal_args

from mnist_softmax.errors import DataError
from mnist_softmax.evaluation.conformal import (
    conformity_scores,
    fit_conformal,
    holdout_mask,
    set_names,
    threshold,
)
from mnist_softmax.evaluation.conformal_file import load_conformal, save_conformal
from mnist_softmax.evaluation.conformal_report import (
    build_sets_figure,
    coverage_metrics,
    coverage_tables,
)

K = 10


def draw(rng: np.random.Generator, n: int, sharp: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a calibrated model and labels drawn from them."""
    logits = rng.normal(0, sharp, (n, K))
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    y = (proba.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    return proba, np.minimum(y, K - 1)


@pytest.mark.parametrize(
    ("method", "mondrian"), [("lac", False), ("aps", False), ("raps", False), ("lac", True)]
)
def test_coverage_is_at_least_one_minus_alpha_on_average_and_not_much_more(method, mondrian):
    alpha, n_cal, coverages = 0.1, 300, []
    rng = np.random.default_rng(0)
    for _ in range(200):
        P_cal, y_cal = draw(rng, n_cal)
        P_test, y_test = draw(rng, 400)
        fitted = fit_conformal(
            P_cal, y_cal, method=method, alpha=alpha, lam=0.05, k_reg=1, mondrian=mondrian
        )
        coverages.append(coverage_metrics(fitted.sets(P_test), y_test)["coverage"])
    mean, sem = np.mean(coverages), np.std(coverages) / math.sqrt(len(coverages))
    assert mean >= 1 - alpha - 3 * sem  # the guarantee (up to the Monte Carlo error)
    # and no more than 1 - alpha + 1/(n+1) for continuous scores (per class for mondrian)
    assert mean <= 1 - alpha + (K if mondrian else 1) / (n_cal + 1) + 3 * sem


def test_the_threshold_is_the_kth_order_statistic():
    scores = np.sort(np.random.default_rng(1).uniform(size=19))
    assert threshold(scores, 0.05) == scores[18]  # k = ceil(20 * 0.95) = 19
    assert threshold(scores, 0.1) == scores[17]  # k = 18
    assert threshold(scores, 0.04) == math.inf  # k = 20 > 19: every class in every set
    for n, alpha in ((100, 0.1), (2501, 0.05), (7, 0.3)):
        s = np.arange(n, dtype=float)
        k = math.ceil((n + 1) * (1 - alpha))
        assert threshold(s, alpha) == s[k - 1]  # np.quantile(method="higher") gives s[k]


def test_scores_match_their_definitions_and_sets_contain_y_iff_its_score_passes():
    P = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    np.testing.assert_allclose(conformity_scores(P, "lac", lam=0, k_reg=0), 1 - P)
    np.testing.assert_allclose(
        conformity_scores(P, "aps", lam=0, k_reg=0), [[0.6, 0.9, 1.0], [0.8, 1.0, 0.6]]
    )
    np.testing.assert_allclose(  # rank penalty lam * (rank - k_reg)+ with k_reg = 1
        conformity_scores(P, "raps", lam=0.5, k_reg=1), [[0.6, 1.4, 2.0], [1.3, 2.0, 0.6]]
    )
    rng = np.random.default_rng(2)
    P, y = draw(rng, 500)
    for method in ("lac", "aps", "raps"):
        fitted = fit_conformal(
            P[:250], y[:250], method=method, alpha=0.2, lam=0.1, k_reg=2, mondrian=False
        )
        S = conformity_scores(P[250:], method, lam=0.1, k_reg=2)
        covered = fitted.sets(P[250:])[np.arange(250), y[250:]]
        np.testing.assert_array_equal(covered, S[np.arange(250), y[250:]] <= fitted.thresholds())


def test_lac_sets_equal_mapies_split_conformal_sets():
    pytest.importorskip("mapie")
    from mnist_softmax.devtools.conformal_bench import mapie_sets

    rng = np.random.default_rng(3)
    for alpha in (0.05, 0.1, 0.2):
        P_cal, y_cal = draw(rng, 1000)
        P_test, _ = draw(rng, 2000)
        ours = fit_conformal(P_cal, y_cal, **conformal_args(alpha=alpha)).sets(P_test)
        theirs = mapie_sets(P_cal, y_cal, P_test, alpha, "lac")
        assert ours.shape == theirs.shape and ours.sum() > 2000 * 0.5
        np.testing.assert_array_equal(ours, theirs)


def test_mondrian_covers_each_class_a_plain_threshold_does_not():
    """A hard class (noisy labels: images the model reads otherwise) is under-covered by one
    threshold, not by one threshold per class."""
    rng = np.random.default_rng(4)

    def hard_draw(n):
        P, y = draw(rng, n, sharp=4.0)
        return P, np.where(rng.uniform(size=n) < 0.1, 0, y)

    P_cal, y_cal = hard_draw(20000)
    P_test, y_test = hard_draw(20000)
    per = {}
    for mondrian in (False, True):
        fitted = fit_conformal(P_cal, y_cal, **conformal_args(alpha=0.1, mondrian=mondrian))
        mask = fitted.sets(P_test)
        per[mondrian] = coverage_tables(mask, y_test, [str(k) for k in range(K)])["per_class"]
    assert per[False]["0"]["coverage"] < 0.85
    assert min(c["coverage"] for c in per[True].values()) > 0.88


def test_holdout_is_stratified_and_seeded():
    y = np.repeat(np.arange(K), [50 + 10 * k for k in range(K)])
    mask = holdout_mask(y, 0.5, np.random.default_rng(0))
    for k in range(K):
        assert mask[y == k].sum() == round(0.5 * (y == k).sum())
    np.testing.assert_array_equal(mask, holdout_mask(y, 0.5, np.random.default_rng(0)))
    assert not np.array_equal(mask, holdout_mask(y, 0.5, np.random.default_rng(1)))


def test_set_names_are_most_probable_first_and_may_be_empty():
    P = np.array([[0.1, 0.7, 0.2], [0.4, 0.3, 0.3]])
    mask = np.array([[True, True, False], [False, False, False]])
    assert set_names(mask, P, ["a,b", 'c"d', "é f"]) == [['c"d', "a,b"], []]


def test_the_file_round_trips_and_serves_any_alpha(tmp_path):
    rng = np.random.default_rng(5)
    P, y = draw(rng, 600)
    for mondrian in (False, True):
        fitted = fit_conformal(
            P, y, method="raps", alpha=0.05, lam=0.02, k_reg=2, mondrian=mondrian
        )
        save_conformal(tmp_path / "c.json", fitted)
        loaded = load_conformal(tmp_path / "c.json", K)
        assert (loaded.method, loaded.alpha, loaded.lam, loaded.k_reg, loaded.mondrian) == (
            "raps",
            0.05,
            0.02,
            2,
            mondrian,
        )
        for alpha in (0.01, 0.05, 0.3):
            np.testing.assert_array_equal(loaded.sets(P, alpha), fitted.sets(P, alpha))
    assert fitted.sets(P, 0.3).sum() < fitted.sets(P, 0.01).sum()  # larger alpha, smaller sets


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "not found"),
        ("{not json", "is not a conformal predictor"),
        ('{"method": "lac"}', "is not a conformal predictor ('alpha')"),
        ({"method": "top", "alpha": 0.1}, "method 'top'"),
        ({"alpha": 1.5}, "alpha=1.5"),
        ({"scores": [[0.3, 0.1]]}, "sorted ascending"),
        ({"scores": [[]]}, "no held-out scores"),
        ({"mondrian": True}, "1 score lists, expected 10"),
    ],
)
def test_a_missing_or_corrupt_file_is_one_data_error(tmp_path, content, words):
    path = tmp_path / "conformal.json"
    good = {"method": "lac", "alpha": 0.05, "lam": 0.0, "k_reg": 0, "mondrian": False,
            "scores": [[0.1, 0.2, 0.3]]}  # fmt: skip
    if isinstance(content, dict):
        path.write_text(json.dumps(good | content))
    elif content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match="conformal") as info:
        load_conformal(path, K)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code != 0


def test_coverage_numbers_and_the_figure_follow_the_sets():
    mask = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=bool)
    y = np.array([0, 1, 2, 1])
    assert coverage_metrics(mask, y) == {"coverage": 0.5, "mean_set_size": 1.5, "size_0": 0.25,
                                         "size_1": 0.25, "size_2_or_more": 0.5}  # fmt: skip
    tables = coverage_tables(mask, y, ["a", "b", "c"])
    assert tables["per_class"]["b"] == {"coverage": 0.5, "mean_set_size": 1.5, "n": 2}
    assert tables["per_size"]["2"] == {"coverage": 0.0, "share": 0.25, "n": 1}
    assert tables["per_size"]["3+"] == {"coverage": 1.0, "share": 0.25, "n": 1}
    curve = {"alpha": [0.05, 0.1], "coverage": [0.95, 0.9], "mean_set_size": [1.2, 1.0]}
    size_ax, alpha_ax, _ = build_sets_figure(tables, curve, 0.05).axes
    assert [bar.get_height() for bar in size_ax.patches] == [0.25, 0.25, 0.25, 0.25]
    assert list(alpha_ax.lines[0].get_ydata()) == [0.95, 0.9]
