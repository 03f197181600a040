"""decide_retrain: age, live performance and drift each give a reason with numbers; none → no retrain."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.policy import (
    MIN_POSITIVES_FOR_PERFORMANCE,
    DriftSummary,
    LandingNews,
    LivePerformance,
    PolicyInputError,
    decide_retrain,
)
from shared.spec import DriftThresholds, TriggerSpec

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TRIGGERS = TriggerSpec(max_model_age_days=30, performance_drop=0.05, drift=DriftThresholds(drifted_share=0.3))
CALM = DriftSummary(drifted=False, drifted_share=0.1, drifted_columns=("amount",), columns_checked=10)
STORM = DriftSummary(
    drifted=True,
    drifted_share=0.4,
    drifted_columns=("amount", "hour", "country_mismatch", "txn_count_24h"),
    columns_checked=10,
)
GOOD = LivePerformance("pr_auc", value=0.58, baseline=0.60, labelled=500, upper=0.66, positives=80)
BAD = LivePerformance("pr_auc", value=0.50, baseline=0.60, labelled=500, upper=0.53, positives=80)


@dataclass
class Case:
    name: str
    registered_days_ago: float | None
    live: LivePerformance | None
    drift: DriftSummary | None
    kinds: list[str]
    says: list[str] = field(default_factory=list)


CASES = [
    Case("fresh, healthy, calm", 3, GOOD, CALM, []),
    Case("too old", 31.5, GOOD, CALM, ["age"], ["model is 31.5 days old > max_model_age_days 30"]),
    Case("exactly at max age is not too old", 30, GOOD, CALM, []),
    Case(
        "performance dropped",
        3,
        BAD,
        CALM,
        ["performance"],
        [
            "live pr_auc 0.5000 is 0.1000 below baseline 0.6000 > performance_drop 0.05, significantly: "
            "its 95% upper bound 0.5300 < 0.5500 (500 labels, 80 positive)"
        ],
    ),
    Case(
        "drifted", 3, GOOD, STORM, ["drift"], ["4 of 10 columns drifted (share 0.40, drifted_share 0.3): amount, hour"]
    ),
    Case(
        "drift share over threshold even without the flag",
        3,
        GOOD,
        DriftSummary(drifted=False, drifted_share=0.3, drifted_columns=("a", "b", "c")),
        ["drift"],
    ),
    Case("everything at once", 45, BAD, STORM, ["age", "performance", "drift"]),
    Case("no model yet", None, None, STORM, ["drift"]),
    Case("no labels yet", 3, None, CALM, []),
    Case("too few labels", 3, LivePerformance("pr_auc", 0.1, 0.6, labelled=20, upper=0.2, positives=10), CALM, []),
    Case("a drop within the noise", 3, replace(BAD, upper=0.58), CALM, []),
    Case("too few positives", 3, replace(BAD, positives=MIN_POSITIVES_FOR_PERFORMANCE - 1), CALM, []),
    Case("no bound", 3, replace(BAD, upper=None), CALM, []),
    Case(
        "accuracy needs no positives",
        3,
        LivePerformance("accuracy", 0.80, 0.97, 500, upper=0.85),
        CALM,
        ["performance"],
    ),
    Case("no drift report", 3, GOOD, None, []),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_retrain_reasons(case: Case) -> None:
    registered = None if case.registered_days_ago is None else NOW - timedelta(days=case.registered_days_ago)
    decision = decide_retrain(now=NOW, triggers=TRIGGERS, registered_at=registered, live=case.live, drift=case.drift)
    assert [r.kind for r in decision.reasons] == case.kinds
    assert decision.retrain is bool(case.kinds)
    text = " | ".join(r.message for r in decision.reasons)
    for phrase in case.says:
        assert phrase in text
    assert decision.summary.startswith("retrain" if case.kinds else "no retrain")


def test_skipped_checks_are_explained() -> None:
    decision = decide_retrain(
        now=NOW,
        triggers=TRIGGERS,
        registered_at=None,
        live=LivePerformance("pr_auc", 0.1, 0.6, 20, upper=0.2, positives=5),
        drift=None,
    )
    assert not decision.retrain
    assert any("no registered model yet" in n for n in decision.notes)
    assert any("only 20 < 100 live labels" in n for n in decision.notes)
    assert any("no drift report" in n for n in decision.notes)


def test_age_evidence_is_machine_readable() -> None:
    decision = decide_retrain(now=NOW, triggers=TRIGGERS, registered_at=NOW - timedelta(days=40))
    assert decision.reasons[0].evidence == {"age_days": 40.0, "max_model_age_days": 30}
    assert str(decision.to_dict()["summary"]).startswith("retrain: model is 40.0 days old")


def test_age_check_can_be_switched_off() -> None:
    decision = decide_retrain(
        now=NOW, triggers=TriggerSpec(max_model_age_days=None), registered_at=NOW - timedelta(days=400)
    )
    assert not decision.retrain
    assert "max_model_age_days is not set" in decision.notes[0]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(PolicyInputError, match="no time zone"):
        decide_retrain(now=datetime(2025, 6, 1), triggers=TRIGGERS, registered_at=None)
    with pytest.raises(PolicyInputError, match="registered_at"):
        decide_retrain(now=NOW, triggers=TRIGGERS, registered_at=datetime(2025, 1, 1))


def test_a_drop_is_a_reason_only_when_significant() -> None:
    """A point estimate below baseline - performance_drop is not enough: its upper bound must be below too."""
    noisy = decide_retrain(now=NOW, triggers=TRIGGERS, registered_at=NOW, live=replace(BAD, upper=0.58))
    assert not noisy.retrain
    assert any("but not significantly: its 95% upper bound 0.5800 >= 0.5500" in n for n in noisy.notes)
    real = decide_retrain(now=NOW, triggers=TRIGGERS, registered_at=NOW, live=BAD)
    assert [r.kind for r in real.reasons] == ["performance"]
    evidence = real.reasons[0].evidence
    assert (evidence["upper"], evidence["confidence"], evidence["positives"]) == (0.53, 0.95, 80)


@pytest.mark.parametrize("metric", ["pr_auc", "roc_auc", "recall", "f1"])
def test_positive_class_metrics_need_enough_positives(metric: str) -> None:
    few = replace(BAD, metric=metric, positives=2)
    decision = decide_retrain(now=NOW, triggers=TRIGGERS, registered_at=NOW, live=few)
    assert not decision.retrain
    assert any("too few positives to judge (2 < 30 positive labels in 500)" in n for n in decision.notes)
    enough = replace(few, positives=MIN_POSITIVES_FOR_PERFORMANCE)
    assert decide_retrain(now=NOW, triggers=TRIGGERS, registered_at=NOW, live=enough).retrain


def test_age_waits_for_new_data() -> None:
    """Every run trains on the whole landing folder: with nothing new since the newest judged run, an age retrain
    would train on the same data, not promote, and (after the cool-down) ask again, every day."""
    old = NOW - timedelta(days=40)
    stale = decide_retrain(
        now=NOW, triggers=TRIGGERS, registered_at=old, landing=LandingNews(new_blobs=0, since_run="fraud-r7")
    )
    assert not stale.retrain
    assert any(
        "model is 40.0 days old > max_model_age_days 30, but no data landed since run fraud-r7" in n
        for n in stale.notes
    )
    fresh = decide_retrain(
        now=NOW, triggers=TRIGGERS, registered_at=old, landing=LandingNews(new_blobs=2, since_run="fraud-r7")
    )
    assert [r.kind for r in fresh.reasons] == ["age"]
    unknown = decide_retrain(now=NOW, triggers=TRIGGERS, registered_at=old, landing=None)
    assert [r.kind for r in unknown.reasons] == ["age"]
