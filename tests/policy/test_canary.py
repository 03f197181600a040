"""analyse_canary / judge_shadow on hand-made bake windows: modes, gates, evidence and bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shared.canary import (
    CanaryInputError,
    CanaryVerdict,
    DeploymentSample,
    MetricResult,
    ShadowAgreement,
    WindowP95,
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


# --------------------------------------------------------------------------- per-window p95s

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _windows(p95s: list[float], requests: int | None = 100, offset: int = 0) -> tuple[WindowP95, ...]:
    return tuple(WindowP95(T0 + timedelta(minutes=offset + i), p, requests) for i, p in enumerate(p95s))


def _azure(name: str, p95s: list[float], requests: int | None = 100, offset: int = 0) -> DeploymentSample:
    """What the Azure adapter gives: per-minute p95s, a request-weighted p95, no samples."""
    total = (requests or 100) * len(p95s)
    return DeploymentSample(name, total, 0, p95_ms=float(np.mean(p95s)), p95_windows=_windows(p95s, requests, offset))


def _jitter(seed: int, n: int, scale: float = 1.0) -> list[float]:
    return list(np.exp(np.random.default_rng(seed).normal(np.log(100.0), 0.05, n)) * scale)


def test_paired_windows_judge_a_challenger_twice_as_slow_beyond_the_ratio_gate() -> None:
    verdict = analyse_canary(_azure("new", _jitter(1, 30, 2.0)), _azure("old", _jitter(2, 30)), GATES)
    latency = _metric(verdict, "latency")
    assert (latency.outcome, latency.hard) == ("breach", False)
    assert latency.evidence["latency_test"] == "paired_windows"
    assert latency.evidence["paired_windows"] == 30
    assert latency.evidence["windows_beyond_max_latency_ratio"] == 30
    assert float(latency.evidence["window_p95_ratio_median"] or 0) == pytest.approx(2.0, rel=0.1)
    assert float(latency.evidence["gate_signed_rank_p_value"] or 1) < 1e-3
    assert "30 paired windows: median p95 ratio" in latency.reason
    assert "breaches max_latency_ratio 1.50" in latency.reason
    assert (verdict.verdict, verdict.hard_failure) == ("fail", False)
    record = json.loads(json.dumps(verdict.to_dict(), allow_nan=False))  # stored and published: strict JSON
    assert record["metrics"][1]["evidence"]["signed_rank_statistic"] == 465.0  # every window's rank counts


def test_paired_windows_pass_an_equal_challenger_and_call_a_modest_slowdown_worse() -> None:
    same = analyse_canary(_azure("new", _jitter(3, 30)), _azure("old", _jitter(4, 30)), GATES)
    assert _metric(same, "latency").outcome == "pass"
    assert same.verdict == "pass"
    slower = analyse_canary(_azure("new", _jitter(3, 30, 1.3)), _azure("old", _jitter(4, 30)), GATES)
    latency = _metric(slower, "latency")
    assert latency.outcome == "worse"  # significantly beyond the 10 % tolerance, within the 1.5x gate
    assert "significantly slower than the champion beyond the 10% tolerance" in latency.reason
    assert slower.verdict == "marginal"


def test_a_slow_spell_in_a_few_windows_is_not_a_slower_challenger() -> None:
    """Ten of thirty minutes 3x slower (a backlog), the rest equal: the median window is equal, so not worse,
    although the bake's p95 ratio is far beyond the gate."""
    challenger = _jitter(5, 30)
    for i in range(10, 20):
        challenger[i] *= 3
    verdict = analyse_canary(_azure("new", challenger), _azure("old", _jitter(6, 30)), GATES)
    latency = _metric(verdict, "latency")
    assert latency.outcome == "pass", latency.reason
    assert float(latency.evidence["p95_ratio"] or 0) > 1.5
    assert float(latency.evidence["window_autocorrelation"] or 0) > 0.3  # the spell is one run, not ten chances


def test_a_challenger_that_steps_up_beyond_the_gate_is_not_passed() -> None:
    """Twenty of thirty minutes 3x slower from minute ten on (a leak, a load-dependent slowdown): the step looks
    like strong serial correlation, but the median minute is beyond the gate, so the p-values for independent
    windows decide."""
    challenger = _jitter(5, 30)
    for i in range(10, 30):
        challenger[i] *= 3
    latency = _metric(analyse_canary(_azure("new", challenger), _azure("old", _jitter(6, 30)), GATES), "latency")
    assert latency.outcome == "breach", latency.reason
    assert latency.evidence["window_p_values_used"] == "independent"
    assert float(latency.evidence["window_autocorrelation"] or 0) > 0.5  # what had let it pass


def test_a_challenger_that_drifts_slower_is_not_passed() -> None:
    """Every minute slower than the one before, from 1.2x to 2.9x the champion."""
    challenger = [p * (1.2 + 1.7 * i / 29) for i, p in enumerate(_jitter(7, 30))]
    latency = _metric(analyse_canary(_azure("new", challenger), _azure("old", _jitter(8, 30)), GATES), "latency")
    assert latency.outcome == "breach", latency.reason


def test_only_windows_with_the_same_start_are_paired() -> None:
    """Thirty challenger minutes, the champion's shifted by 25: five pairs are too few, and with aggregates only
    the point comparison decides, as before."""
    verdict = analyse_canary(_azure("new", _jitter(7, 30)), _azure("old", _jitter(8, 30), offset=25), GATES)
    latency = _metric(verdict, "latency")
    assert latency.evidence["paired_windows"] == 5
    assert latency.evidence["latency_test"] == "aggregates"
    assert "5 paired windows < 12: too few for the per-window test" in latency.reason
    assert "aggregates only" in latency.reason


def test_too_few_windows_fall_back_to_the_per_request_tests() -> None:
    rng = np.random.default_rng(9)
    new, old = bake(rng, "new", 500), bake(rng, "old", 500)
    few = analyse_canary(
        replace(new, p95_windows=_windows([100.0] * 8)), replace(old, p95_windows=_windows([100.0] * 8)), GATES
    )
    latency = _metric(few, "latency")
    assert latency.evidence["latency_test"] == "per_request"
    assert "mann_whitney_p_value" in latency.evidence


def test_windows_with_no_requests_are_not_paired() -> None:
    challenger = (*_windows([100.0] * 12), WindowP95(T0 + timedelta(minutes=12), 900.0, 0))
    champion = _windows([100.0] * 13)
    verdict = analyse_canary(
        DeploymentSample("new", 1300, 0, p95_ms=100.0, p95_windows=challenger),
        DeploymentSample("old", 1300, 0, p95_ms=100.0, p95_windows=champion),
        GATES,
    )
    assert _metric(verdict, "latency").evidence["paired_windows"] == 12


def test_windows_alone_give_the_bake_p95() -> None:
    """A caller that gives only windows still has a p95: their request-weighted mean, as the Azure adapter's."""
    sample = DeploymentSample(
        "new", 300, 0, p95_windows=(WindowP95(T0, 100.0, 100), WindowP95(T0 + timedelta(minutes=1), 200.0, 200))
    )
    verdict = analyse_canary(sample, None, GATES)
    assert _metric(verdict, "latency").evidence["challenger_p95_ms"] == pytest.approx(500 / 3)


@pytest.mark.parametrize(("confidence", "needed"), [(0.99, 12), (0.95, 10), (0.999, 17)])
def test_the_windows_needed_follow_alpha(confidence: float, needed: int) -> None:
    """At least min_windows (10), and enough that the test (its exact and its normal p-value) can reject at
    alpha = (1 - confidence) / 4 with one window going the other way."""
    gates = GATES.model_copy(update={"confidence": confidence})
    verdict = analyse_canary(_azure("new", _jitter(1, 30)), _azure("old", _jitter(2, 30)), gates)
    assert _metric(verdict, "latency").evidence["min_windows"] == needed


def test_a_challenger_with_more_requests_per_window_gets_an_allowance() -> None:
    """The challenger's p95 of 900 requests a minute against the champion's of 100 sits higher by itself."""
    new = DeploymentSample("new", 27000, 0, p95_ms=100.0, p95_windows=_windows(_jitter(1, 30), 900))
    old = DeploymentSample("old", 3000, 0, p95_ms=100.0, p95_windows=_windows(_jitter(2, 30), 100))
    heavy = _metric(analyse_canary(new, old, GATES), "latency").evidence
    light = _metric(analyse_canary(old, new, GATES), "latency").evidence
    assert float(heavy["window_allowance_max"] or 0) == pytest.approx(0.5 * (1.6355 - 1.5594), abs=0.002)
    assert light["window_allowance_max"] == 0.0  # fewer requests: its p95s sit lower, no allowance needed
    assert (heavy["challenger_window_requests"], heavy["champion_window_requests"]) == (27000, 3000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requests": 5, "errors": 6}, "errors=6 exceeds requests=5"),
        ({"requests": -1, "errors": 0}, "requests=-1 is not a count"),
        ({"requests": 5, "errors": 0, "predicted_positive": 6}, "predicted_positive=6 exceeds"),
        ({"requests": 5, "errors": 0, "labelled": 2, "correct": 3}, "correct=3 exceeds labelled=2"),
        ({"requests": 2, "errors": 0, "latencies_ms": (1.0, float("nan"))}, "NaN"),
        ({"requests": 2, "errors": 0, "p95_ms": -3.0}, "p95_ms=-3.0 is not a latency"),
        ({"requests": 2, "errors": 0, "p95_windows": (WindowP95(T0, float("nan")),)}, "has p95_ms=nan"),
        ({"requests": 2, "errors": 0, "p95_windows": (WindowP95(T0, 5.0, -1),)}, "has requests=-1"),
        ({"requests": 2, "errors": 0, "p95_windows": (WindowP95(T0, 5.0), WindowP95(T0, 6.0))}, "two p95 windows"),
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
