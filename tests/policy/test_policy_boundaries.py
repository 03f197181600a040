"""The promotion, retrain and rollout rules exactly at their limits: which side of each boundary a value falls on,
as docs/policy.md states it, and the reason the run records there."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.policy import (
    Check,
    Comparison,
    Difference,
    ModelMetrics,
    PromotionDecision,
    decide_promotion,
)
from shared.spec import Guardrail, PromotionSpec

CHAMPION = ModelMetrics(accuracy=0.97, precision=0.80, recall=0.70, f1=0.75, roc_auc=0.95, pr_auc=0.60, ece=0.02)
SPEC = PromotionSpec(
    primary_metric="pr_auc",
    min_improvement=0.005,
    significance=0.05,
    guardrails=[Guardrail(metric="precision", max_regression=0.05)],
    first_run_floor={"pr_auc": 0.3, "ece": 0.05},
)


def _comparison(
    *,
    estimate: float = 0.012,
    p_value: float = 0.01,
    ci: tuple[float, float] = (0.003, 0.021),
    confidence: float = 0.95,
    champion: ModelMetrics = CHAMPION,
) -> Comparison:
    """A clear win over ``champion`` unless told otherwise; the challenger's pr_auc is the champion's + estimate."""
    return Comparison(
        primary_metric="pr_auc",
        n_holdout=5000,
        challenger=replace(champion, pr_auc=champion.pr_auc + estimate),
        champion=champion,
        difference=Difference("pr_auc", estimate, ci[0], ci[1], confidence, p_value, 1000),
        mcnemar=None,
    )


def _check(decision: PromotionDecision, name: str) -> Check:
    return next(c for c in decision.checks if c.name == name)


# --------------------------------------------------------------------------- rule 1: min_improvement


def test_a_gain_of_exactly_min_improvement_is_enough() -> None:
    decision = decide_promotion(_comparison(estimate=0.005, ci=(0.001, 0.009)), SPEC)
    check = _check(decision, "min_improvement")
    assert check.passed
    assert "pr_auc +0.0050 >= min_improvement 0.005" in check.reason
    assert decision.promote


def test_a_gain_a_rounding_error_below_min_improvement_is_still_enough() -> None:
    """0.344 - 0.339 is 0.004999999999999949 in floating point: the limit is "at least", not "above"."""
    gain = 0.344 - 0.339
    assert gain < 0.005
    decision = decide_promotion(_comparison(estimate=gain, ci=(0.001, 0.009)), SPEC)
    assert _check(decision, "min_improvement").passed
    assert decision.promote


def test_a_gain_of_exactly_zero_is_too_small_not_a_better_champion() -> None:
    decision = decide_promotion(_comparison(estimate=0.0, p_value=0.5, ci=(-0.01, 0.01)), SPEC)
    check = _check(decision, "min_improvement")
    assert not check.passed
    assert check.reason.startswith("pr_auc +0.0000 < min_improvement 0.005")
    assert "champion is better" not in decision.summary
    assert not decision.promote


# --------------------------------------------------------------------------- first run: floors


def _first_run(**challenger: float) -> Comparison:
    return Comparison(
        primary_metric="pr_auc",
        n_holdout=5000,
        challenger=replace(CHAMPION, **challenger),
        champion=None,
        difference=None,
        mcnemar=None,
    )


def test_a_first_model_exactly_at_its_floor_is_promoted() -> None:
    decision = decide_promotion(_first_run(pr_auc=0.3), SPEC)
    check = _check(decision, "first_run_floor.pr_auc")
    assert check.passed
    assert check.reason == "pr_auc 0.3000 >= first_run_floor 0.3000"
    assert decision.promote


def test_an_ece_floor_is_a_ceiling_and_exactly_at_it_passes() -> None:
    at = decide_promotion(_first_run(ece=0.05), SPEC)
    assert _check(at, "first_run_floor.ece").reason == "ece 0.0500 <= first_run_floor 0.0500"
    assert at.promote
    below = decide_promotion(_first_run(ece=0.01), SPEC)
    assert _check(below, "first_run_floor.ece").passed, "a lower ece is better"
    above = decide_promotion(_first_run(ece=0.06), SPEC)
    check = _check(above, "first_run_floor.ece")
    assert (check.passed, check.reason) == (False, "ece 0.0600 > first_run_floor 0.0500")
    assert not above.promote


# --------------------------------------------------------------------------- rule 2: significance


def test_a_one_sided_p_of_exactly_half_the_significance_is_not_significant() -> None:
    decision = decide_promotion(_comparison(p_value=0.025), SPEC)
    check = _check(decision, "significance")
    assert not check.passed
    assert "one-sided p=0.025 >= significance/2 = 0.025" in check.reason
    assert not decision.promote


def test_a_p_between_half_the_significance_and_the_significance_is_not_enough_without_a_usable_interval() -> None:
    """p < significance is a 90 % interval's test; with the 95 % one the run shows not usable, p decides alone."""
    decision = decide_promotion(_comparison(p_value=0.04, ci=(0.001, 0.03), confidence=0.9), SPEC)
    check = _check(decision, "significance")
    assert not check.passed
    assert "one-sided p=0.04 >= significance/2 = 0.025" in check.reason
    assert "90% CI [+0.0010, +0.0300] does not match 1-significance, not used" in check.reason
    assert not decision.promote


def test_an_interval_that_starts_exactly_at_zero_does_not_lie_above_it() -> None:
    decision = decide_promotion(_comparison(p_value=0.01, ci=(0.0, 0.024)), SPEC)
    check = _check(decision, "significance")
    assert not check.passed
    assert "95% CI [+0.0000, +0.0240] includes 0" in check.reason
    assert not decision.promote


def test_a_small_p_does_not_overrule_a_matching_interval_that_includes_zero() -> None:
    """The p-value and the interval must both hold: they agree only up to bootstrap quantile noise."""
    decision = decide_promotion(_comparison(p_value=0.01, ci=(-0.001, 0.025)), SPEC)
    check = _check(decision, "significance")
    assert not check.passed
    assert "95% CI [-0.0010, +0.0250] includes 0" in check.reason
    assert not decision.promote


@pytest.mark.parametrize("estimate", [0.0, -0.001])
def test_no_gain_is_never_significant_whatever_the_p_value(estimate: float) -> None:
    decision = decide_promotion(_comparison(estimate=estimate, p_value=0.01, ci=(0.001, 0.02), confidence=0.9), SPEC)
    check = _check(decision, "significance")
    assert not check.passed
    assert f"pr_auc {estimate:+.4f}: no gain to test" in check.reason


@pytest.mark.parametrize(
    ("confidence", "used"),
    [(0.95, True), (0.95 + 5e-7, True), (0.951, False), (0.94, False)],
)
def test_the_interval_counts_only_at_the_confidence_of_the_significance(confidence: float, used: bool) -> None:
    # A small p with an interval that includes 0: only an interval at 1 - significance (within 1e-6) can veto it.
    decision = decide_promotion(_comparison(p_value=0.01, ci=(-0.001, 0.025), confidence=confidence), SPEC)
    check = _check(decision, "significance")
    assert check.evidence["ci_used"] is used
    assert check.passed is not used
    assert decision.promote is not used


# --------------------------------------------------------------------------- rule 3: holdout size


@pytest.mark.parametrize(
    ("rows", "rarest", "passed"),
    [(100, 30, True), (99, 30, False), (100, 29, False), (100, None, True), (99, None, False)],
)
def test_the_holdout_needs_at_least_100_rows_and_30_of_the_rarest_class(
    rows: int, rarest: int | None, passed: bool
) -> None:
    decision = decide_promotion(replace(_comparison(), n_holdout=rows, n_positive=rarest), SPEC)
    check = _check(decision, "holdout_size")
    assert check.passed is passed
    counted = f"{rows} rows" + ("" if rarest is None else f", {rarest} of the rarest class")
    if passed:
        assert check.reason == f"holdout of {counted} is large enough"
    else:
        assert check.reason.startswith(f"holdout too small to compare the models: {counted} (at least 100 rows and 30")
    assert decision.promote is passed


# --------------------------------------------------------------------------- rule 4: guardrails with an interval


def _precision_drop(drop: float, low: float, high: float) -> Comparison:
    """The challenger's precision is ``drop`` below the champion's, and the bootstrap's interval of the regression
    (champion - challenger) is [low, high]: evaluate.py's difference, challenger - champion, is [-high, -low]."""
    comparison = _comparison()
    return replace(
        comparison,
        challenger=replace(comparison.challenger, precision=CHAMPION.precision - drop),
        guardrail_differences={"precision": Difference("precision", -drop, -high, -low, 0.95, 0.5, 1000)},
    )


def test_an_interval_whose_upper_end_is_exactly_the_limit_settles_the_guardrail_within_it() -> None:
    decision = decide_promotion(_precision_drop(0.01, -0.03, 0.05), SPEC)
    check = _check(decision, "guardrail.precision")
    assert check.passed
    assert check.evidence["settled"] is True
    assert check.reason.endswith("interval [-0.0300, +0.0500], higher is better) within max_regression 0.05")
    review = decide_promotion(
        _precision_drop(0.01, -0.03, 0.05), SPEC.model_copy(update={"review_uncertain_guardrails": True})
    )
    assert (review.promote, review.needs_review) == (True, False), "a settled guardrail is sent to no one"


def test_an_interval_whose_lower_end_is_exactly_the_limit_does_not_settle_the_guardrail_beyond_it() -> None:
    """Exactly max_regression is allowed, so an interval starting there cannot show the limit broken."""
    decision = decide_promotion(_precision_drop(0.05, 0.05, 0.09), SPEC)
    check = _check(decision, "guardrail.precision")
    assert check.evidence["settled"] is False
    assert check.passed, "unsettled: the point estimate, exactly at the limit, decides"
    assert "within max_regression 0.05 on the point estimate (the holdout cannot settle it" in check.reason
    assert decision.promote
    review = decide_promotion(
        _precision_drop(0.05, 0.05, 0.09), SPEC.model_copy(update={"review_uncertain_guardrails": True})
    )
    assert (review.promote, review.needs_review) == (True, True)
