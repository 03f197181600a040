"""decide_retrain: age, live performance and drift each give a reason with numbers; none → no retrain."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from shared.policy import DriftSummary, LivePerformance, PolicyInputError, decide_retrain
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
GOOD = LivePerformance("pr_auc", value=0.58, baseline=0.60, labelled=500)
BAD = LivePerformance("pr_auc", value=0.50, baseline=0.60, labelled=500)


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
        ["live pr_auc 0.5000 is 0.1000 below baseline 0.6000 > performance_drop 0.05 (500 labels)"],
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
    Case("too few labels", 3, LivePerformance("pr_auc", 0.1, 0.6, labelled=20), CALM, []),
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
        now=NOW, triggers=TRIGGERS, registered_at=None, live=LivePerformance("pr_auc", 0.1, 0.6, 20), drift=None
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
