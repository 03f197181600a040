"""training_jobs/metrics.py against independent ground truth.

The expected numbers were computed with scikit-learn 1.9 (``roc_auc_score``, ``average_precision_score``,
``precision_recall_fscore_support`` with ``zero_division=0``, ``accuracy_score``) on the very arrays below, or by
hand where scikit-learn has no counterpart (the expected calibration error, the F1-best threshold); scikit-learn is
not a dependency of the compute environment, so the numbers are written out. Each case is small enough to check
with pencil and paper.
"""

from __future__ import annotations

import json
import math

import numpy as np
import numpy.typing as npt
import pytest

from training_jobs.metrics import (
    class_metric,
    class_metrics,
    classification_metrics,
    expected_calibration_error,
    f1_threshold,
    json_safe,
    metric_value,
    non_finite_rows,
    predict_classes,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# --------------------------------------------------------------------------- a binary case with ties at 0.5

#: Three rows sit exactly on the 0.5 threshold (two positives, one negative): predicted positive (p >= t).
Y_BINARY: IntArray = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0], dtype=np.int64)
P_BINARY: FloatArray = np.array([0.9, 0.8, 0.8, 0.5, 0.5, 0.4, 0.3, 0.3, 0.2, 0.1, 0.5, 0.05])


def test_binary_metrics_match_scikit_learn_with_rows_on_the_threshold() -> None:
    m = classification_metrics(Y_BINARY, P_BINARY, 0.5, ["neg", "pos"])
    # TP 4 (0.9, 0.8, 0.5, 0.5), FP 2 (0.8, 0.5), FN 1 (0.3): sklearn's binary P/R/F1 and accuracy.
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(0.7272727272727273)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["roc_auc"] == pytest.approx(0.8)
    assert m["pr_auc"] == pytest.approx(0.7111111111111111)
    assert m["per_class"]["neg"] == {"precision": pytest.approx(5 / 6), "recall": pytest.approx(5 / 7), "support": 7}
    assert m["per_class"]["pos"] == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(0.8), "support": 5}


def test_a_probability_equal_to_the_threshold_is_predicted_positive() -> None:
    assert predict_classes(np.array([0.3, 0.5, 0.7]), 0.5).tolist() == [0, 1, 1]
    assert predict_classes(np.array([0.3, 0.5, 0.7]), 0.3).tolist() == [1, 1, 1]


def test_given_predictions_are_judged_instead_of_the_threshold() -> None:
    """train.py's cross-fitted predictions: the threshold-dependent metrics are those of ``predictions``."""
    predictions = np.array([1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0], dtype=np.int64)
    m = classification_metrics(Y_BINARY, P_BINARY, 0.5, ["neg", "pos"], predictions=predictions)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((0.6, 0.6, 0.6))
    assert m["accuracy"] == pytest.approx(8 / 12)
    assert m["per_class"]["pos"]["support"] == 5
    assert m["roc_auc"] == pytest.approx(0.8), "the ranking metrics still judge the probabilities"


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.85])
@pytest.mark.parametrize("name", ["accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"])
def test_the_fast_metric_value_is_the_full_metrics_value(name: str, threshold: float) -> None:
    """metric_value feeds the bootstrap and early stopping: it must read as metrics.json does, threshold included."""
    full = classification_metrics(Y_BINARY, P_BINARY, threshold)[name]
    assert metric_value(name, Y_BINARY, P_BINARY, threshold) == pytest.approx(full)


# --------------------------------------------------------------------------- a multiclass case

#: Five declared classes: 0-2 have rows; 3 has none but is predicted once (row 7); 4 has no row and no prediction.
Y_MULTI: IntArray = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 0], dtype=np.int64)
P_MULTI: FloatArray = np.array(
    [
        [0.7, 0.1, 0.1, 0.1, 0.0],
        [0.2, 0.5, 0.2, 0.1, 0.0],
        [0.4, 0.3, 0.2, 0.1, 0.0],
        [0.1, 0.6, 0.2, 0.1, 0.0],
        [0.3, 0.2, 0.4, 0.1, 0.0],
        [0.1, 0.1, 0.7, 0.1, 0.0],
        [0.2, 0.1, 0.6, 0.1, 0.0],
        [0.1, 0.1, 0.2, 0.6, 0.0],
        [0.3, 0.3, 0.35, 0.05, 0.0],
        [0.6, 0.2, 0.1, 0.1, 0.0],
    ]
)
NAMES = ["a", "b", "c", "d", "e"]


def test_multiclass_macro_metrics_match_scikit_learn_default_labels() -> None:
    """sklearn averages over the labels in y_true or y_pred (a, b, c, d), not over e: P (1 + .5 + .75 + 0) / 4."""
    m = classification_metrics(Y_MULTI, P_MULTI, classes=NAMES)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["precision"] == pytest.approx(0.5625)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5267857142857143)
    # One-vs-rest ROC-AUC / average precision of the classes with rows (d and e have none: undefined, skipped).
    assert m["roc_auc"] == pytest.approx(0.84375)
    assert m["pr_auc"] == pytest.approx(0.7906746031746031)
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": None, "support": 0}
    assert m["per_class"]["e"] == {"precision": None, "recall": None, "support": 0}


def test_per_class_guardrail_metrics_match_scikit_learn_per_label() -> None:
    predicted = predict_classes(P_MULTI, 0.5)
    assert predicted.tolist() == [0, 1, 0, 1, 2, 2, 2, 3, 2, 0]
    per_class = class_metrics(Y_MULTI, predicted, NAMES)
    expected = {  # sklearn precision_recall_fscore_support(labels=[0..4], average=None, zero_division=0)
        "a": (1.0, 0.75, 0.8571428571428571, 4),
        "b": (0.5, 0.5, 0.5, 2),
        "c": (0.75, 0.75, 0.75, 4),
    }
    for name, (precision, recall, f1, support) in expected.items():
        assert per_class[name] == {
            "precision": pytest.approx(precision),
            "recall": pytest.approx(recall),
            "f1": pytest.approx(f1),
            "support": support,
        }
        c = NAMES.index(name)
        assert class_metric("precision", c, Y_MULTI, predicted) == pytest.approx(precision)
        assert class_metric("recall", c, Y_MULTI, predicted) == pytest.approx(recall)
        assert class_metric("f1", c, Y_MULTI, predicted) == pytest.approx(f1)
    # No holdout row: undefined (README: "a class with no holdout row has all three null"), predicted or not.
    assert per_class["d"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert per_class["e"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert math.isnan(class_metric("recall", 3, Y_MULTI, predicted))


def test_a_class_with_rows_that_is_never_predicted_has_precision_and_f1_zero() -> None:
    y = np.array([0, 0, 1, 1, 2], dtype=np.int64)
    predicted = np.array([0, 0, 1, 0, 0], dtype=np.int64)
    assert class_metrics(y, predicted, ["x", "y", "z"])["z"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
    }


# --------------------------------------------------------------------------- expected calibration error (by hand)


def test_ece_puts_a_probability_of_one_in_the_top_bin() -> None:
    # A confident wrong answer (p = 1.0, y = 0) is the worst calibration there is: weight 1/2, gap 1.
    assert expected_calibration_error(np.array([0, 0]), np.array([1.0, 0.0])) == pytest.approx(0.5)


def test_ece_bins_are_ten_equal_width_half_open_intervals() -> None:
    # 0.5 and 0.55 share the bin [0.5, 0.6): confidence 0.525, outcome 0.5. Split into two bins they would read 0.525.
    assert expected_calibration_error(np.array([1, 0]), np.array([0.5, 0.55])) == pytest.approx(0.025)
    # 0.45 and 0.55 are in different bins: 0.5 * |1 - 0.45| + 0.5 * |0 - 0.55| = 0.55.
    assert expected_calibration_error(np.array([1, 0]), np.array([0.45, 0.55])) == pytest.approx(0.55)


def test_multiclass_ece_is_that_of_the_top_class_confidence() -> None:
    # Top confidences and whether the argmax is right, bin by bin (weight x |accuracy - mean confidence|):
    # [0.3, 0.4): 0.35 right -> 0.1 * 0.65; [0.4, 0.5): 0.4 right, 0.4 wrong -> 0.2 * 0.1; [0.5, 0.6): 0.5 wrong ->
    # 0.1 * 0.5; [0.6, 0.7): four 0.6s, three right -> 0.4 * 0.15; [0.7, 0.8): two 0.7s, both right -> 0.2 * 0.3.
    assert expected_calibration_error(Y_MULTI, P_MULTI) == pytest.approx(0.065 + 0.02 + 0.05 + 0.06 + 0.06)


# --------------------------------------------------------------------------- the F1-best threshold (by hand)


def test_the_threshold_that_flags_exactly_the_positives_is_chosen() -> None:
    # Cuts at 0.9: F1 2*1/(1+2) = 2/3; 0.8: 2*2/(2+2) = 1 (both positives, nothing else); 0.7: 2*2/(3+2) = 0.8.
    assert f1_threshold(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.7])) == 0.8


def test_of_equal_f1_the_highest_threshold_is_chosen() -> None:
    # Cuts at 0.9: F1 2*1/(1+2) = 2/3; 0.8: 2/4; 0.7: 2/5; 0.6: 2*2/(4+2) = 2/3. The tie goes to 0.9 (fewer alerts).
    assert f1_threshold(np.array([1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6])) == 0.9


def test_tied_probabilities_are_never_split_by_the_threshold() -> None:
    # Cuts: 0.9 -> F1 2/3; 0.5 (all five rows, the tie cannot be split) -> 4/7. Splitting the 0.5s after the
    # positive would read 1.0, but no threshold predicts only some of the rows at 0.5.
    assert f1_threshold(np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.5, 0.5, 0.5, 0.5])) == 0.9


# --------------------------------------------------------------------------- broken probabilities and JSON


def test_metrics_of_non_finite_probabilities_keep_the_class_supports() -> None:
    m = classification_metrics(Y_BINARY, np.full(len(Y_BINARY), np.nan), 0.5, ["neg", "pos"])
    assert m["per_class"] == {
        "neg": {"precision": None, "recall": None, "support": 7},
        "pos": {"precision": None, "recall": None, "support": 5},
    }


def test_a_row_with_any_non_finite_class_probability_is_counted() -> None:
    p = np.array([[0.2, 0.8], [np.nan, 0.5], [0.5, np.inf], [np.nan, np.nan]])
    assert non_finite_rows(p) == 3
    assert non_finite_rows(np.array([0.1, np.nan, -np.inf])) == 2


def test_json_safe_turns_every_non_finite_float_into_null_in_any_container() -> None:
    value = {"a": float("inf"), "b": np.float64(-np.inf), "c": (1.5, math.nan), "d": [np.int64(3)], "e": None}
    safe = json_safe(value)
    assert safe == {"a": None, "b": None, "c": [1.5, None], "d": [3], "e": None}
    json.dumps(safe, allow_nan=False)
