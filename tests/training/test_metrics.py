"""The numpy metrics against brute-force definitions, and the comparison statistics against known values."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from training_jobs.comparison import mcnemar, paired_bootstrap
from training_jobs.metrics import (
    average_precision,
    classification_metrics,
    expected_calibration_error,
    f1_threshold,
    json_safe,
    metric_value,
    roc_auc,
)


def brute_roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    pairs = [(a, b) for a, b in itertools.product(p[y == 1], p[y == 0])]
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def brute_average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Sum over thresholds t (distinct scores, high to low) of (R(t) - R(previous t)) * P(t)."""
    total, previous_recall = 0.0, 0.0
    for t in sorted(set(p.tolist()), reverse=True):
        chosen = p >= t
        recall = (chosen & (y == 1)).sum() / (y == 1).sum()
        precision = (chosen & (y == 1)).sum() / chosen.sum()
        total += (recall - previous_recall) * precision
        previous_recall = recall
    return float(total)


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_and_average_precision_match_their_definitions_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(80) < 0.2).astype(np.int64)
    y[0], y[1] = 1, 0
    p = np.round(rng.random(80) * 0.5 + 0.4 * y, 1)  # rounding makes many ties
    assert roc_auc(y, p) == pytest.approx(brute_roc_auc(y, p))
    assert average_precision(y, p) == pytest.approx(brute_average_precision(y, p))


def test_perfect_and_undefined_rankings() -> None:
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert average_precision(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert math.isnan(roc_auc(np.zeros(4, dtype=np.int64), np.array([0.1, 0.2, 0.3, 0.4])))


def test_binary_metrics_are_those_of_the_positive_class() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.3, 0.7, 0.4])  # TP=1, FP=1, FN=1
    m = classification_metrics(y, p, 0.5, ["neg", "pos"])
    assert m["precision"] == 0.5
    assert m["recall"] == 0.5
    assert m["f1"] == 0.5
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["neg"] == {"precision": 0.75, "recall": 0.75, "support": 4}


def test_expected_calibration_error() -> None:
    # Two bins: 0.2 (true rate 0.25) and 0.9 (true rate 0.75): ECE = 0.5*0.05 + 0.5*0.15.
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    p = np.array([0.2] * 4 + [0.9] * 4)
    assert expected_calibration_error(y, p) == pytest.approx(0.10)
    assert expected_calibration_error(np.array([1, 0]), np.array([1.0, 0.0])) == 0.0


def test_mcnemar_exact_and_chi_square() -> None:
    y = np.ones(100, dtype=np.int64)
    new = np.ones(100)
    old = np.ones(100)
    old[:10] = 0.0  # champion wrong on 10 rows the challenger gets right
    new[95:] = 0.0  # challenger wrong on 5 rows... that the champion gets right
    result = mcnemar(y, new, old, 0.5, 0.5)
    assert (result.b, result.c) == (5, 10)
    # Exact two-sided binomial, n=15, k=5: 2 * P(X <= 5) = 0.3018
    assert result.p_value == pytest.approx(0.30175781, abs=1e-6)
    old[:40] = 0.0
    big = mcnemar(y, new, old, 0.5, 0.5)  # b=5, c=40: chi-square with continuity correction
    assert (big.b, big.c) == (5, 40)
    assert big.statistic == pytest.approx((35 - 1) ** 2 / 45)
    assert big.p_value == pytest.approx(math.erfc(math.sqrt(big.statistic / 2)))
    assert big.p_value < 1e-5


def test_the_paired_bootstrap_interval_covers_the_estimate() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(np.int64)
    good = np.clip(0.6 * y + rng.random(2000) * 0.5, 0, 1)
    noisy = np.clip(0.2 * y + rng.random(2000) * 0.8, 0, 1)
    d = paired_bootstrap("pr_auc", y, good, noisy, 0.5, 0.5, samples=300, confidence=0.9, seed=1)
    assert d.ci_low < d.estimate < d.ci_high
    assert d.ci_low > 0
    assert d.p_value == 0.0
    assert d.bootstrap_samples == 300


def test_multiclass_macro_averages_skip_classes_absent_from_the_rows_and_the_predictions() -> None:
    # A 3-class model on rows of classes a and b only, every prediction right: 1.0, not 2/3 (c is not a 0).
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array(
        [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.7, 0.2, 0.1], [0.1, 0.85, 0.05]]
    )
    m = classification_metrics(y, p, classes=["a", "b", "c"])
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0)
    assert m["per_class"]["c"] == {"precision": None, "recall": None, "support": 0}  # undefined, not 0
    # A class that is predicted but has no rows is present (scikit-learn's labels): its precision counts as 0.
    p[0] = [0.1, 0.1, 0.8]
    m = classification_metrics(y, p, classes=["a", "b", "c"])
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": None, "support": 0}
    assert m["precision"] == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    assert m["recall"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert m["f1"] == pytest.approx((0.8 + 1.0 + 0.0) / 3)
    json.dumps(json_safe(m), allow_nan=False)  # what metrics.json / comparison.json write


def test_a_class_never_predicted_has_an_undefined_precision_in_per_class() -> None:
    y = np.array([0, 0, 1, 1])
    m = classification_metrics(y, np.array([0.1, 0.2, 0.3, 0.4]), 0.5, ["neg", "pos"])
    assert m["per_class"]["pos"] == {"precision": None, "recall": 0.0, "support": 2}
    assert m["precision"] == 0.0  # the headline binary precision keeps scikit-learn's zero_division=0


def test_probabilities_that_are_not_finite_give_undefined_metrics_never_a_number() -> None:
    y = np.array([0, 1, 0, 1, 0, 0, 1, 0])
    for p in (np.full(8, np.nan), np.array([0.1, 0.9, 0.2, np.inf, 0.3, 0.1, 0.8, 0.2]), np.full((8, 3), np.nan)):
        m = classification_metrics(y, p)
        for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "ece"):
            assert math.isnan(m[name]), (name, p)
        assert math.isnan(expected_calibration_error(y, p))  # a NaN falls out of every bin: it read as ece 0.0
        assert math.isnan(metric_value("accuracy", y, p))
        assert json.loads(json.dumps(json_safe(m), allow_nan=False))["ece"] is None


@pytest.mark.parametrize("seed", range(5))
def test_the_auto_threshold_is_the_best_f1_cut(seed: int) -> None:
    """--threshold auto: no cut of the validation rows gives a higher F1 of the positive class (checked against
    every distinct probability), and of equal F1 the highest cut is taken (fewer alerts)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.08).astype(np.int64)
    p = np.round(np.clip(0.3 * y + rng.random(300) * 0.5, 0, 1), 2)  # ties, and positives mostly under 0.5
    chosen = f1_threshold(y, p)
    assert chosen is not None
    best = max(metric_value("f1", y, p, float(t)) for t in np.unique(p))
    assert metric_value("f1", y, p, chosen) == pytest.approx(best)
    assert all(metric_value("f1", y, p, float(t)) < best - 1e-12 for t in np.unique(p) if t > chosen)
    assert metric_value("f1", y, p, chosen) > metric_value("f1", y, p, 0.5)


def test_no_auto_threshold_without_a_positive_row_or_with_broken_probabilities() -> None:
    assert f1_threshold(np.zeros(5, dtype=np.int64), np.linspace(0, 1, 5)) is None
    assert f1_threshold(np.array([0, 1]), np.array([0.2, math.nan])) is None
