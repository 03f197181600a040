"""analyse_canary / judge_shadow on hand-made bake windows: modes, gates, evidence and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.canary import (
    CanaryInputError,
    CanaryVerdict,
    DeploymentSample,
    MetricResult,
    ShadowAgreement,
    analyse_canary,
    judge_shadow,
)
from shared.spec import Gates, ShadowSpec
from tests.policy.synthetic import bake

GATES = Gates(max_error_rate=0.01, max_p95_latency_ms=300, max_latency_ratio=1.5, min_samples=50, confidence=0.99)


def _metric(verdict: CanaryVerdict, name: str) -> MetricResult:
    return next(m for m in verdict.metrics if m.metric == name)


def test_a_crash_on_load_fails_hard_after_a_handful_of_requests() -> None:
    """10 requests, all errors: far below min_samples, yet the binomial gate test is already sure."""
    crashed = DeploymentSample("new", requests=10, errors=10)
    verdict = analyse_canary(crashed, bake(np.random.default_rng(0), "old", 900), GATES)
    assert (verdict.verdict, verdict.hard_failure, verdict.mode) == ("fail", True, "insufficient")
    error = _metric(verdict, "error_rate")
    assert error.outcome == "breach"
    assert error.evidence["challenger_errors"] == 10
    assert float(error.evidence["gate_p_value"] or 1.0) < 1e-10
    assert "error rate 100.00% (10/10)" in error.reason
    assert "breaches max_error_rate 1.00%" in error.reason
    assert verdict.reasons[0] == "fail (hard): gate breached on error_rate"


def test_too_few_requests_is_inconclusive() -> None:
    rng = np.random.default_rng(1)
    verdict = analyse_canary(bake(rng, "new", 20, error_rate=0.0), bake(rng, "old", 900), GATES)
    assert verdict.verdict == "inconclusive"
    assert "fewer than min_samples=50" in verdict.reasons[0]


def test_one_error_in_few_requests_is_not_a_failure() -> None:
    """1 error in 60 requests is above a 1 % gate, but not significantly: a warning, not a rollback."""
    rng = np.random.default_rng(2)
    challenger = DeploymentSample("new", 60, 1, tuple(rng.lognormal(3.7, 0.4, 60)), predicted_positive=1)
    verdict = analyse_canary(challenger, bake(rng, "old", 540, error_rate=0.0), GATES)
    assert verdict.verdict == "pass"
    assert verdict.warnings == ("error_rate: beyond its gate, not significantly yet",)


def test_at_100_percent_only_the_absolute_gates_are_judged() -> None:
    rng = np.random.default_rng(3)
    verdict = analyse_canary(bake(rng, "new", 500), DeploymentSample("old", 0, 0), GATES)
    assert (verdict.verdict, verdict.mode) == ("pass", "gates_only")
    assert _metric(verdict, "positive_rate").outcome == "nodata"
    assert "comparisons skipped" in verdict.reasons[1]


def test_a_first_model_without_champion_is_judged_on_gates() -> None:
    rng = np.random.default_rng(4)
    slow = bake(rng, "new", 200, scale=10.0)  # p95 ~ 900 ms > 300 ms
    verdict = analyse_canary(slow, None, GATES)
    assert (verdict.verdict, verdict.hard_failure) == ("fail", True)
    latency = _metric(verdict, "latency")
    assert "breaches max_p95_latency_ms 300" in latency.reason


def test_aggregates_without_samples_are_compared_without_a_test() -> None:
    new = DeploymentSample("new", 1000, 2, p50_ms=40, p95_ms=200, p99_ms=260, predicted_positive=20)
    old = DeploymentSample("old", 9000, 20, p50_ms=40, p95_ms=100, p99_ms=130, predicted_positive=180)
    verdict = analyse_canary(new, old, GATES)
    latency = _metric(verdict, "latency")
    assert latency.outcome == "breach"
    assert latency.evidence["p95_ratio"] == 2.0
    assert latency.evidence["challenger_p95_source"] == "aggregate"
    assert "aggregates only" in latency.reason
    assert (verdict.verdict, verdict.hard_failure) == ("fail", False)


def test_a_positive_rate_shift_is_caught() -> None:
    rng = np.random.default_rng(5)
    verdict = analyse_canary(bake(rng, "new", 1000, positive_rate=0.12), bake(rng, "old", 1000), GATES)
    assert verdict.verdict == "fail"
    assert _metric(verdict, "positive_rate").outcome == "breach"


def test_a_modest_slowdown_is_marginal_not_fail() -> None:
    """30 % slower everywhere: significantly worse, but within the 1.5x p95 gate → marginal (hold)."""
    rng = np.random.default_rng(6)
    verdict = analyse_canary(bake(rng, "new", 1000, scale=1.3), bake(rng, "old", 1000), GATES)
    assert verdict.verdict == "marginal"
    assert _metric(verdict, "latency").outcome == "worse"
    assert verdict.score is not None
    assert 0.6 <= verdict.score < 0.95


def test_errors_worse_than_the_champion_fail_even_under_the_gate() -> None:
    rng = np.random.default_rng(7)
    new = bake(rng, "new", 4000, error_rate=0.009)
    old = bake(rng, "old", 4000, error_rate=0.0005)
    verdict = analyse_canary(new, old, GATES)
    assert _metric(verdict, "error_rate").outcome == "worse"
    assert (verdict.verdict, verdict.hard_failure) == ("fail", False)


def test_every_verdict_keeps_its_evidence_and_serialises() -> None:
    rng = np.random.default_rng(8)
    verdict = analyse_canary(bake(rng, "new", 300), bake(rng, "old", 2700), GATES)
    latency = _metric(verdict, "latency")
    for key in ("mann_whitney_u", "mann_whitney_p_value", "tail_p_value", "challenger_p95_ms", "max_latency_ratio"):
        assert key in latency.evidence
    for key in ("fisher_p_value", "challenger_hits", "champion_total", "max_accuracy_drop"):
        assert key in _metric(verdict, "accuracy").evidence
    record = json.loads(json.dumps(verdict.to_dict()))
    assert record["verdict"] == "pass"
    assert record["confidence"] == 0.99


def test_outliers_are_trimmed_before_mann_whitney() -> None:
    rng = np.random.default_rng(9)
    new = bake(rng, "new", 1000)
    spiky = DeploymentSample(
        "new", 1000, new.errors, new.latencies_ms[:990] + (5000.0,) * 10, predicted_positive=new.predicted_positive
    )
    verdict = analyse_canary(spiky, bake(rng, "old", 1000), GATES)
    assert _metric(verdict, "latency").evidence["trimmed_challenger"] == 10
    assert verdict.verdict == "pass"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requests": 5, "errors": 6}, "errors=6 exceeds requests=5"),
        ({"requests": -1, "errors": 0}, "requests=-1 is not a count"),
        ({"requests": 5, "errors": 0, "predicted_positive": 6}, "predicted_positive=6 exceeds"),
        ({"requests": 5, "errors": 0, "labelled": 2, "correct": 3}, "correct=3 exceeds labelled=2"),
        ({"requests": 2, "errors": 0, "latencies_ms": (1.0, float("nan"))}, "NaN"),
        ({"requests": 2, "errors": 0, "p95_ms": -3.0}, "p95_ms=-3.0 is not a latency"),
    ],
)
def test_impossible_samples_are_refused_with_a_hint(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CanaryInputError, match=message.replace("(", r"\(")) as caught:
        DeploymentSample("new", **kwargs)  # type: ignore[arg-type]
    assert caught.value.hint


# --------------------------------------------------------------------------- shadow

SHADOW = ShadowSpec(enabled=True, mirror_percent=20, min_agreement=0.9)


def _lat(seed: int, n: int, scale: float = 1.0) -> list[float]:
    return list(np.random.default_rng(seed).lognormal(np.log(40), 0.4, n) * scale)


@pytest.mark.parametrize(
    ("agreed", "compared", "scale", "verdict"),
    [
        (970, 1000, 1.0, "pass"),
        (800, 1000, 1.0, "fail"),  # 80 % agreement, significantly below 90 %
        (88, 100, 1.0, "pass"),  # 88 % on 100: below, but not significantly → warning only
        (970, 1000, 2.5, "fail"),  # slow challenger
        (10, 10, 1.0, "inconclusive"),
    ],
)
def test_judge_shadow(agreed: int, compared: int, scale: float, verdict: str) -> None:
    n = max(compared, 10)
    result = judge_shadow(ShadowAgreement(compared, agreed), _lat(1, n, scale), _lat(2, n), SHADOW, GATES)
    assert result.verdict == verdict, result.reasons
    assert any("prediction agreement" in r for r in result.reasons)


def test_shadow_below_min_agreement_without_significance_warns() -> None:
    result = judge_shadow(ShadowAgreement(100, 88), _lat(1, 100), _lat(2, 100), SHADOW, GATES)
    assert "agreement: beyond its gate, not significantly yet" in result.warnings


def test_impossible_agreement_is_refused() -> None:
    with pytest.raises(CanaryInputError, match="agreed must be between 0 and compared"):
        ShadowAgreement(10, 11)
