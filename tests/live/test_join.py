"""Labels ⨝ predictions on crafted records: the counts the canary needs and the live metrics."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shared.live import (
    LiveCounts,
    _average_precision,
    _rank_metric,
    _ranked,
    _roc_auc,
    baseline_metrics,
    join_labels,
    live_performance,
    predicts_positive,
    upper_bound,
)
from shared.platform import ScoringRecord
from shared.registry import ModelVersion
from shared.storage import FeedbackLabel
from training_jobs.metrics import classification_metrics

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def record(
    request_id: str,
    classes: list[str],
    probabilities: list[float | None] | None = None,
    status: int | None = 200,
    minute: int = 0,
) -> ScoringRecord:
    return ScoringRecord(
        request_id=request_id,
        time=T0 + timedelta(minutes=minute),
        deployment="blue",
        status=status,
        rows=len(classes),
        predictions=tuple(classes),
        probabilities=tuple(probabilities or ()),
    )


def label(request_id: str, value: str, row: int = 0) -> FeedbackLabel:
    return FeedbackLabel(request_id=request_id, label=value, row=row)


def test_binary_join_counts_rows_by_request_id_and_row() -> None:
    records = [
        record("a", ["1"]),  # TP
        record("b", ["0"]),  # FN (label 1)
        record("c", ["1", "0", "0"]),  # rows: FP, TN, TN
        record("d", ["0"], status=500),  # failed: not counted even if labelled
        record("e", ["0"]),  # never labelled
    ]
    labels = [
        label("a", "1"),
        label("b", "1"),
        label("c", "0", row=0),
        label("c", "0", row=1),
        label("c", "0", row=2),
        label("c", "1", row=7),  # no such row
        label("d", "0"),
        label("zzz", "1"),  # unknown request
    ]
    counts = join_labels(records, labels, deployment="blue")
    assert (counts.requests, counts.labels_read, counts.labelled, counts.correct) == (4, 8, 5, 3)
    assert (counts.true_positive, counts.false_positive, counts.false_negative, counts.true_negative) == (1, 1, 1, 2)
    metrics = counts.metrics()
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["precision"] == pytest.approx(1 / 2)
    assert metrics["recall"] == pytest.approx(1 / 2)
    assert metrics["f1"] == pytest.approx(1 / 2)
    assert "pr_auc" not in metrics  # no probabilities recorded
    assert "roc_auc" not in metrics


def test_the_latest_label_and_the_latest_answer_win() -> None:
    # A client retry reuses its request id: the later answer is the one the client saw last.
    records = [record("a", ["0"], minute=0), record("a", ["1"], minute=1)]
    counts = join_labels(records, [label("a", "0"), label("a", "1")], deployment="blue")
    assert (counts.labelled, counts.correct) == (1, 1)


@pytest.mark.parametrize(
    ("positive_class", "label_value", "prediction", "correct"),
    [
        (1, "1", "1", True),
        (1, "1.0", "1", True),
        (1, "true", "1", True),
        (1, "0", "1", False),
        (True, "1", "1", True),
        ("fraud", "fraud", "1", True),  # score.py answers 1 for the positive class
        ("fraud", "legit", "1", False),
        ("fraud", "legit", "0", True),
        ("fraud", "fraud", "fraud", True),  # a scoring script that names the class
        # positive_class 0 (label 0 = default): score.py still answers index 1 for it and 0 for the other class
        (0, "0", "1", True),
        (0, "1", "0", True),
        (0, "0", "0", False),
        (0, "1", "1", False),
        ("0", "0.0", "1", True),
        (False, "false", "1", True),
        (False, "0", "1", True),
        (0, "true", "0", True),
    ],
)
def test_binary_labels_are_compared_by_meaning(
    positive_class: str | int | bool, label_value: str, prediction: str, correct: bool
) -> None:
    counts = join_labels(
        [record("a", [prediction])], [label("a", label_value)], deployment="b", positive_class=positive_class
    )
    assert (counts.labelled, counts.correct) == (1, int(correct))


@pytest.mark.parametrize(
    ("label_value", "positive"),
    [("yes", True), ("Y", True), ("T", True), ("TRUE", True), ("no", False), ("N", False), ("f", False)],
)
def test_a_bool_label_reads_every_spelling_its_column_accepts(label_value: str, positive: bool) -> None:
    """Validation and training read yes/no, y/n and t/f (any case) in a bool column: labels spelt so are that class,
    not the negative one for want of matching `true`."""
    counts = join_labels(
        [record("a", ["1"])], [label("a", label_value)], deployment="b", positive_class=True, bool_label=True
    )
    assert (counts.true_positive, counts.false_positive) == ((1, 0) if positive else (0, 1))
    as_text = join_labels([record("a", ["1"])], [label("a", label_value)], deployment="b", positive_class=True)
    assert as_text.true_positive == int(label_value == "TRUE")  # other label types keep their exact spellings


def test_rank_metrics_match_the_training_definitions() -> None:
    rng = np.random.default_rng(7)
    n = 400
    y = (rng.random(n) < 0.2).astype(np.int64)
    p = np.clip(0.35 * y + rng.random(n) * 0.7, 0, 1).round(2)  # rounded: ties exercise the tie handling
    threshold = 0.5
    records = [record(f"r{i}", [str(int(p[i] >= threshold))], [float(p[i])]) for i in range(n)]
    labels = [label(f"r{i}", str(int(y[i]))) for i in range(n)]
    live = join_labels(records, labels, deployment="blue").metrics()
    expected = classification_metrics(y, p.astype(np.float64), threshold)
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"):
        assert live[name] == pytest.approx(expected[name], abs=1e-12), name


def test_rank_metrics_need_a_probability_on_every_labelled_row() -> None:
    records = [record("a", ["1"], [0.9]), record("b", ["0"], [None]), record("c", ["0"], [0.2])]
    counts = join_labels(records, [label("a", "1"), label("b", "0"), label("c", "0")], deployment="blue")
    assert counts.scores == ()
    assert "pr_auc" not in counts.metrics()
    one_class = join_labels([record("a", ["1"], [0.9])], [label("a", "1")], deployment="blue")
    assert "roc_auc" not in one_class.metrics()  # undefined with one class
    assert one_class.metrics()["pr_auc"] == 1.0


def test_multiclass_counts_only_labels_spelt_like_the_predictions() -> None:
    records = [record("a", ["2"]), record("b", ["0"]), record("c", ["1"])]
    good = join_labels(records, [label("a", "2"), label("b", "1"), label("c", "1")], deployment="b", task="multiclass")
    assert (good.labelled, good.correct) == (3, 2)
    assert good.metrics() == {"accuracy": pytest.approx(2 / 3)}
    names = join_labels(
        records, [label("a", "travel"), label("b", "fuel"), label("c", "1")], deployment="b", task="multiclass"
    )
    assert names.unmatched_spelling == 2
    assert names.metrics() == {}
    performance, notes = live_performance(names, "accuracy", {"accuracy": 0.9})
    assert performance is None
    assert "class indices" in notes[0]


def test_live_performance_uses_the_primary_metric_or_says_why_not() -> None:
    scored = LiveCounts(
        "blue",
        labelled=200,
        correct=180,
        true_positive=10,
        false_positive=5,
        false_negative=10,
        true_negative=175,
        scores=(0.9,) * 100 + (0.1,) * 100,
        outcomes=(1,) * 50 + (0,) * 150,
    )
    baseline = {"pr_auc": 0.6, "accuracy": 0.97, "recall": 0.7}
    performance, notes = live_performance(scored, "recall", baseline)
    assert performance is not None
    assert (performance.metric, performance.baseline, performance.labelled) == ("recall", 0.7, 200)
    assert performance.value == pytest.approx(0.5)
    assert notes == []

    unscored = LiveCounts("blue", labelled=200, correct=180, true_positive=10, false_positive=5, false_negative=10)
    performance, notes = live_performance(unscored, "pr_auc", baseline)
    assert performance is not None
    assert (performance.metric, performance.value, performance.baseline) == ("accuracy", 0.9, 0.97)
    assert notes == ["live pr_auc cannot be computed from the labels: judged on accuracy instead"]

    performance, notes = live_performance(unscored, "pr_auc", {})
    assert performance is None
    assert "no accuracy baseline" in notes[0]
    assert live_performance(LiveCounts("blue"), "pr_auc", baseline) == (None, [])
    assert math.isclose(scored.metrics()["accuracy"], 0.9)


@pytest.mark.parametrize("positive_class", [0, 1])
def test_a_perfect_binary_model_scores_perfectly_whatever_the_positive_label(positive_class: int) -> None:
    """score.py's class is an index (1 = positive): with positive_class 0, a predicted 0 is a *negative*."""
    negative = 1 - positive_class
    truth = [positive_class, negative, negative, negative]
    records = [
        record(f"r{i}", ["1" if y == positive_class else "0"], [0.9 if y == positive_class else 0.1])
        for i, y in enumerate(truth)
    ]
    labels = [label(f"r{i}", str(y)) for i, y in enumerate(truth)]
    counts = join_labels(records, labels, deployment="blue", positive_class=positive_class)
    assert (counts.true_positive, counts.false_positive, counts.false_negative, counts.true_negative) == (1, 0, 0, 3)
    assert counts.metrics() == {m: 1.0 for m in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")}


def test_predicts_positive_reads_score_py_indices() -> None:
    assert predicts_positive("1", 0)
    assert not predicts_positive("0", 0)
    assert predicts_positive("1.0", "fraud")
    assert not predicts_positive("0", "fraud")
    assert predicts_positive("fraud", "fraud")
    assert not predicts_positive("legit", "fraud")


def _counts(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> LiveCounts:
    pred = p >= threshold
    return LiveCounts(
        "blue",
        labelled=len(y),
        correct=int((pred == (y == 1)).sum()),
        true_positive=int((pred & (y == 1)).sum()),
        false_positive=int((pred & (y == 0)).sum()),
        false_negative=int((~pred & (y == 1)).sum()),
        true_negative=int((~pred & (y == 0)).sum()),
        scores=tuple(float(v) for v in p),
        outcomes=tuple(int(v) for v in y),
    )


def test_a_weighted_rank_metric_is_the_metric_of_the_resample() -> None:
    """The bootstrap reweights the sorted rows instead of re-sorting: a resample's weights give its metric."""
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.2).astype(np.int64)
    p = (0.3 * y + rng.random(300)).round(2)  # ties
    ranked, ends = _ranked(y, p)
    order = np.argsort(-p, kind="mergesort")
    for _ in range(5):
        take = rng.integers(0, 300, 300)
        weights = np.bincount(take, minlength=300)[order]
        assert _rank_metric("pr_auc", ranked, ends, weights) == pytest.approx(_average_precision(y[take], p[take]))
        assert _rank_metric("roc_auc", ranked, ends, weights) == pytest.approx(_roc_auc(y[take], p[take]))


def test_upper_bounds_cover_the_value_and_shrink_with_labels() -> None:
    rng = np.random.default_rng(5)

    def sample(n: int) -> LiveCounts:
        y = (rng.random(n) < 0.2).astype(np.int64)
        return _counts(y, np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1))

    small, large = sample(500), sample(20_000)
    for metric in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"):
        bounds = [upper_bound(c, metric, 0.95) for c in (small, large)]
        assert all(b is not None for b in bounds), metric
        width = [b - c.metrics()[metric] for b, c in zip(bounds, (small, large), strict=True) if b is not None]
        assert 0 < width[1] < width[0], (metric, width)
    assert upper_bound(small, "pr_auc", 0.95) == upper_bound(small, "pr_auc", 0.95)  # fixed seed: deterministic
    # Wilson's one-sided bound, 90 of 100 right, z = 1.6449: (0.9 + z²/200 + z·sqrt(0.0009 + z²/40000)) / (1 + z²/100)
    assert upper_bound(LiveCounts("b", labelled=100, correct=90), "accuracy", 0.95) == pytest.approx(0.9393, abs=1e-4)
    assert upper_bound(LiveCounts("b", labelled=100, correct=90), "pr_auc", 0.95) is None  # no scores


def test_live_performance_carries_the_bound_and_the_positives() -> None:
    rng = np.random.default_rng(9)
    y = (rng.random(2_000) < 0.1).astype(np.int64)
    counts = _counts(y, np.clip(0.4 * y + 0.6 * rng.random(2_000), 0, 1))
    performance, _ = live_performance(counts, "pr_auc", {"pr_auc": 0.9}, confidence=0.9)
    assert performance is not None
    assert performance.positives == int(y.sum())
    assert performance.confidence == 0.9
    assert performance.upper == upper_bound(counts, "pr_auc", 0.9)
    assert performance.upper is not None
    assert performance.upper > performance.value


def _version(metrics: dict[str, float], evaluation: dict[str, object]) -> ModelVersion:
    return ModelVersion("fraud", "3", "run-3", "c1", "manual", "x", "e", "u", metrics=metrics, evaluation=evaluation)


def test_the_baseline_is_the_holdout_evaluation_when_there_is_one() -> None:
    """Validation metrics chose the best candidate, so they flatter it; the holdout evaluation does not."""
    validation = {"pr_auc": 0.70, "accuracy": 0.99, "ece": 0.01}
    comparison = {"primary_metric": "pr_auc", "n_holdout": 4000, "challenger": {"pr_auc": 0.62, "accuracy": 0.98}}
    assert baseline_metrics(_version(validation, comparison)) == (
        {"pr_auc": 0.62, "accuracy": 0.98, "ece": 0.01},
        "holdout",
    )
    assert baseline_metrics(_version(validation, {})) == (validation, "validation")
    assert baseline_metrics(_version(validation, {"challenger": {"pr_auc": None}})) == (validation, "validation")
