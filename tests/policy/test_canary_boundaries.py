"""analyse_canary exactly at its limits: a difference at a tolerance or a gate falls on the side docs/policy.md
states, and the verdict and its reason say so."""

from __future__ import annotations

import pytest

from shared.canary import CanaryVerdict, DeploymentSample, MetricResult, analyse_canary
from tests.policy.synthetic import GATES


def _metric(verdict: CanaryVerdict, name: str) -> MetricResult:
    return next(m for m in verdict.metrics if m.metric == name)


def _served(name: str, requests: int, errors: int = 0, **kwargs: int) -> DeploymentSample:
    """A bake window the platform reports as aggregates: the same 120 ms p95 on both sides."""
    return DeploymentSample(name, requests, errors, p50_ms=40.0, p95_ms=120.0, p99_ms=200.0, **kwargs)


# --------------------------------------------------------------------------- error rate against the champion


@pytest.mark.parametrize(
    ("errors", "outcome", "verdict"),
    [
        (40, "pass", "pass"),  # +0.20 %: significant, but within the tolerance
        (50, "pass", "pass"),  # +0.25 %: exactly max_error_rate / 4 is not more than it
        (80, "worse", "fail"),  # +0.40 %: significant and beyond the tolerance; worse error rate alone fails
    ],
)
def test_more_errors_than_the_champion_count_only_beyond_a_quarter_of_the_gate(
    errors: int, outcome: str, verdict: str
) -> None:
    # 20,000 requests a side and a champion without errors: any of these excesses is significant (Fisher p < 1e-9),
    # and all stay under the 1 % gate, so only the comparison's tolerance (0.25 x 1 %) decides.
    result = analyse_canary(_served("new", 20000, errors), _served("old", 20000), GATES)
    error = _metric(result, "error_rate")
    assert float(error.evidence["fisher_p_value"] or 1.0) < 1e-9
    assert error.evidence["tolerance"] == pytest.approx(0.0025)
    assert error.outcome == outcome
    assert (result.verdict, result.hard_failure) == (verdict, False)
    if outcome == "worse":
        assert "significantly worse than the champion" in error.reason
        assert result.reasons[0].startswith("fail (soft): score 0.44 < marginal_score 0.60; worse: error_rate")
    else:
        assert "within max_error_rate 1.00%" in error.reason


def test_an_error_rate_exactly_at_the_gate_is_not_beyond_it() -> None:
    verdict = analyse_canary(_served("new", 400, 4), _served("old", 4000, 40), GATES)
    error = _metric(verdict, "error_rate")
    assert error.evidence["challenger_rate"] == 0.01
    assert (error.outcome, error.unconfirmed_excess, error.hold) == ("pass", False, False)
    assert verdict.warnings == ()
    assert verdict.verdict == "pass"
