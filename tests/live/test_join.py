"""Labels ⨝ predictions on crafted records: the counts the canary needs and the live metrics."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shared.live import LiveCounts, join_labels, live_performance
from shared.platform import ScoringRecord
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
    ],
)
def test_binary_labels_are_compared_by_meaning(
    positive_class: str | int | bool, label_value: str, prediction: str, correct: bool
) -> None:
    counts = join_labels(
        [record("a", [prediction])], [label("a", label_value)], deployment="b", positive_class=positive_class
    )
    assert (counts.labelled, counts.correct) == (1, int(correct))


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
