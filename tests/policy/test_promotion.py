"""decide_promotion: a challenger replaces the champion only when the numbers say so, and the run says why."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from shared.policy import (
    Comparison,
    Difference,
    ModelMetrics,
    PolicyInputError,
    decide_promotion,
)
from shared.spec import Guardrail, PromotionSpec

BASE = ModelMetrics(accuracy=0.97, precision=0.80, recall=0.70, f1=0.75, roc_auc=0.95, pr_auc=0.60, ece=0.02)
SPEC = PromotionSpec(
    primary_metric="pr_auc",
    min_improvement=0.005,
    significance=0.05,
    guardrails=[Guardrail(metric="precision", max_regression=0.05), Guardrail(metric="ece", max_regression=0.01)],
    first_run_floor={"pr_auc": 0.3, "recall": 0.5},
)


def _comparison(
    *,
    estimate: float = 0.012,
    p_value: float = 0.01,
    ci: tuple[float, float] = (0.003, 0.021),
    confidence: float = 0.95,
    challenger: dict[str, float] | None = None,
    champion: bool = True,
) -> Comparison:
    new = replace(BASE, pr_auc=BASE.pr_auc + estimate, **(challenger or {}))
    return Comparison(
        primary_metric="pr_auc",
        n_holdout=5000,
        challenger=new,
        champion=BASE if champion else None,
        difference=Difference("pr_auc", estimate, ci[0], ci[1], confidence, p_value, 1000) if champion else None,
        mcnemar=None,
    )


@dataclass
class Case:
    name: str
    comparison: Comparison
    promote: bool
    says: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)


CASES = [
    Case(
        "clear win",
        _comparison(),
        True,
        [
            "pr_auc +0.0120 >= min_improvement 0.005",
            "is significant (95% CI [+0.0030, +0.0210] above 0; one-sided p=0.01 < significance/2 = 0.025)",
            "holdout of 5000 rows is large enough",
        ],
    ),
    Case(
        "gain below min_improvement",
        _comparison(estimate=0.0031, p_value=0.01, ci=(0.0004, 0.006)),
        False,
        ["pr_auc +0.0031 < min_improvement 0.005"],
        ["min_improvement"],
    ),
    Case(
        "insignificant gain",
        _comparison(estimate=0.02, p_value=0.2, ci=(-0.01, 0.05)),
        False,
        [
            "gain +0.0200 is not significant "
            "(one-sided p=0.2 >= significance/2 = 0.025; 95% CI [-0.0100, +0.0500] includes 0)"
        ],
        ["significance"],
    ),
    Case(
        "champion better",
        _comparison(estimate=-0.004, p_value=0.4, ci=(-0.01, 0.002)),
        False,
        ["champion is better: pr_auc -0.0040 (challenger 0.5960 vs champion 0.6000)"],
        ["min_improvement", "significance"],
    ),
    Case(
        "guardrail breach",
        _comparison(challenger={"precision": 0.741}),
        False,
        ["precision 0.8000 → 0.7410 (regression +0.0590, higher is better) exceeds max_regression 0.05"],
        ["guardrail.precision"],
    ),
    Case(
        "lower-is-better guardrail breach (ece up)",
        _comparison(challenger={"ece": 0.035}),
        False,
        ["ece 0.0200 → 0.0350 (regression +0.0150, lower is better) exceeds max_regression 0.01"],
        ["guardrail.ece"],
    ),
    Case(
        "guardrail regression exactly at the limit is allowed",
        _comparison(challenger={"precision": 0.75}),
        True,
        ["within max_regression 0.05"],
    ),
    Case(
        # The audit's case: the one-sided p passed "p < 0.05" while the run showed a 95 % CI including 0.
        "a one-sided p below significance but a ci including 0 is not significant",
        _comparison(estimate=0.0332, p_value=0.043, ci=(-0.0057, 0.0702), confidence=0.95),
        False,
        ["one-sided p=0.043 >= significance/2 = 0.025; 95% CI [-0.0057, +0.0702] includes 0"],
        ["significance"],
    ),
    Case(
        "a ci above 0 with a p that disagrees is not enough",
        _comparison(p_value=0.06, ci=(0.001, 0.03), confidence=0.95),
        False,
        ["one-sided p=0.06 >= significance/2"],
        ["significance"],
    ),
    Case(
        "a ci of another confidence is not used",
        _comparison(p_value=0.01, ci=(-0.001, 0.03), confidence=0.9),
        True,
        ["one-sided p=0.01 < significance/2 = 0.025"],
    ),
    Case(
        "a holdout with too few positives decides nothing",
        replace(_comparison(), n_positive=4),
        False,
        ["holdout too small to compare the models: 5000 rows, 4 of the rarest class (at least 100 rows and 30"],
        ["holdout_size"],
    ),
    Case(
        "a holdout of too few rows decides nothing",
        replace(_comparison(), n_holdout=60),
        False,
        ["holdout too small to compare the models: 60 rows (at least 100 rows"],
        ["holdout_size"],
    ),
    Case("first run above every floor", _comparison(champion=False), True, ["pr_auc 0.6120 >= first_run_floor 0.3000"]),
    Case(
        "first run below a floor",
        _comparison(champion=False, challenger={"recall": 0.42}),
        False,
        ["recall 0.4200 < first_run_floor 0.5000"],
        ["first_run_floor.recall"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_promotion_decision_and_its_reasons(case: Case) -> None:
    decision = decide_promotion(case.comparison, SPEC)
    assert decision.promote is case.promote
    assert decision.first_run is (case.comparison.champion is None)
    text = " | ".join(decision.reasons)
    for phrase in case.says:
        assert phrase in text
    assert sorted(c.name for c in decision.checks if not c.passed) == sorted(case.failed_checks)
    assert decision.summary.startswith("promote" if case.promote else "not promoted")
    for check in decision.checks:
        assert check.reason, "every check says why"


def test_every_check_is_recorded_even_when_the_first_fails() -> None:
    decision = decide_promotion(_comparison(estimate=-0.01, p_value=0.5, ci=(-0.02, 0.0)), SPEC)
    assert [c.name for c in decision.checks] == [
        "min_improvement",
        "significance",
        "holdout_size",
        "guardrail.precision",
        "guardrail.ece",
    ]
    assert decision.checks[0].evidence["estimate"] == -0.01


def test_the_decision_serialises_for_the_run_record() -> None:
    record = decide_promotion(_comparison(), SPEC).to_dict()
    assert record["promote"] is True
    assert isinstance(record["reasons"], list)
    assert record["reasons"]


def test_no_first_run_floor_promotes_the_first_model_and_says_so() -> None:
    decision = decide_promotion(_comparison(champion=False), PromotionSpec())
    assert decision.promote
    assert "no first_run_floor set" in decision.reasons[0]


def test_a_first_model_judged_on_a_small_holdout_ships_and_the_run_says_the_floors_mean_little() -> None:
    small = replace(_comparison(champion=False), n_holdout=278, n_positive=12)
    decision = decide_promotion(small, SPEC)
    assert decision.promote, "nothing better to serve: a small holdout does not hold a first model back"
    assert decision.summary == "promote: first model, every first_run_floor met (on a small holdout)"
    [note] = [c for c in decision.checks if c.name == "holdout_size"]
    assert note.passed
    assert note.reason.startswith("note: the floors were measured on a small holdout (278 rows, 12 of the rarest")
    large = decide_promotion(_comparison(champion=False), SPEC)
    assert "holdout_size" not in [c.name for c in large.checks]


def test_a_comparison_of_another_metric_is_refused() -> None:
    with pytest.raises(PolicyInputError, match="primary_metric is 'roc_auc'") as caught:
        decide_promotion(_comparison(), PromotionSpec(primary_metric="roc_auc"))
    assert "--primary-metric roc_auc" in caught.value.hint


def test_a_guardrail_on_an_unreported_metric_is_refused() -> None:
    spec = PromotionSpec(guardrails=[Guardrail(metric="log_loss", max_regression=0.1)])
    with pytest.raises(PolicyInputError, match="'log_loss'"):
        decide_promotion(_comparison(), spec)


def test_mcnemar_is_recorded_but_never_blocks() -> None:
    from shared.policy import McNemar

    comparison = replace(_comparison(), mcnemar=McNemar(b=30, c=12, statistic=7.7, p_value=0.005))
    decision = decide_promotion(comparison, SPEC)
    assert decision.promote
    assert any("McNemar" in r for r in decision.reasons)


# --------------------------------------------------------------------------- a champion that could not be scored

BROKEN = "the champion /mnt/champion (run id run-7) gives probabilities that are not finite (NaN or inf) for 505 rows"


def _over_broken_champion(**challenger: float) -> Comparison:
    return replace(_comparison(champion=False, challenger=challenger), n_positive=60, champion_unscorable=BROKEN)


def test_over_an_unscorable_champion_a_challenger_meeting_every_floor_is_promoted() -> None:
    decision = decide_promotion(_over_broken_champion(), SPEC)
    assert decision.promote
    assert not decision.first_run
    assert [c.name for c in decision.checks] == [
        "champion_unscorable",
        "first_run_floor.pr_auc",
        "first_run_floor.recall",
        "holdout_size",
    ]
    situation = decision.checks[0]
    assert situation.passed
    assert f"the champion could not be scored ({BROKEN})" in situation.reason
    assert "judged alone, on promotion.first_run_floor" in situation.reason
    assert situation.evidence["champion_unscorable"] == BROKEN
    assert decision.summary == "promote: the champion could not be scored; the challenger meets every first_run_floor"


def test_over_an_unscorable_champion_a_challenger_below_a_floor_is_not_promoted() -> None:
    decision = decide_promotion(_over_broken_champion(recall=0.42), SPEC)
    assert not decision.promote
    assert [c.name for c in decision.checks if not c.passed] == ["first_run_floor.recall"]
    assert decision.summary.startswith("not promoted: the champion could not be scored")
    assert "recall 0.4200 < first_run_floor 0.5000" in decision.summary


def test_over_an_unscorable_champion_a_small_holdout_decides_nothing() -> None:
    decision = decide_promotion(replace(_over_broken_champion(), n_positive=4), SPEC)
    assert not decision.promote
    assert [c.name for c in decision.checks if not c.passed] == ["holdout_size"]


def test_over_an_unscorable_champion_without_floors_nothing_is_promoted_blindly() -> None:
    decision = decide_promotion(_over_broken_champion(), PromotionSpec())
    assert not decision.promote
    (check,) = decision.checks
    assert (check.name, check.passed) == ("champion_unscorable", False)
    assert BROKEN in check.reason
    assert "set promotion.first_run_floor" in check.reason
    assert "POST /api/models/<model>/versions/<version>/rollout" in check.reason
    assert "perennial rollout" in check.reason
    assert decision.summary.startswith("not promoted: the champion could not be scored")


# ----------------------------------------------------------------- guardrails with evaluate.py's bootstrap


def _with_precision_interval(drop: float, low: float, high: float) -> Comparison:
    """The champion's precision less the challenger's is ``drop``; the bootstrap's interval of the challenger
    minus the champion is [-high, -low] (so the regression's interval is [low, high])."""
    comparison = _comparison(challenger={"precision": BASE.precision - drop})
    interval = Difference("precision", -drop, -high, -low, 0.95, 0.5, 1000)
    return replace(comparison, guardrail_differences={"precision": interval})


@pytest.mark.parametrize(
    ("drop", "interval", "passed", "says"),
    [
        # Settled within: even the interval's worst end is under max_regression 0.05.
        (0.01, (-0.02, 0.04), True, "interval [-0.0200, +0.0400], higher is better) within max_regression 0.05"),
        # Settled beyond: even the interval's best end is over it.
        (0.12, (0.07, 0.17), False, "exceeds max_regression 0.05"),
        # Unsettled: the point estimate decides, and the reason says the holdout could not tell.
        (0.02, (-0.03, 0.09), True, "within max_regression 0.05 on the point estimate (the holdout cannot settle"),
        (0.07, (0.01, 0.13), False, "exceeds max_regression 0.05 on the point estimate (the holdout cannot settle"),
    ],
    ids=["settled-within", "settled-beyond", "unsettled-small-drop", "unsettled-large-drop"],
)
def test_a_guardrail_with_an_interval_says_whether_the_holdout_settles_it(
    drop: float, interval: tuple[float, float], passed: bool, says: str
) -> None:
    decision = decide_promotion(_with_precision_interval(drop, *interval), SPEC)
    [check] = [c for c in decision.checks if c.name == "guardrail.precision"]
    assert check.passed is passed
    assert says in check.reason, check.reason
    assert check.evidence["regression_ci_low"] == pytest.approx(interval[0])
    assert check.evidence["regression_ci_high"] == pytest.approx(interval[1])
    assert decision.promote is passed
    assert decision.needs_review is False, "review is opt-in"


def test_an_unsettled_guardrail_holds_the_challenger_for_a_person_when_the_spec_asks() -> None:
    review = SPEC.model_copy(update={"review_uncertain_guardrails": True})
    # A drop the holdout cannot tell from no drop, whichever side of the limit its point estimate falls.
    for drop, interval in ((0.02, (-0.03, 0.09)), (0.07, (0.01, 0.13))):
        decision = decide_promotion(_with_precision_interval(drop, *interval), review)
        assert decision.promote is True
        assert decision.needs_review is True
        assert decision.summary.startswith("promote after a person's approval")
        assert "guardrail precision" in decision.summary
        [check] = [c for c in decision.checks if c.name == "guardrail.precision"]
        assert "the holdout cannot settle it against max_regression 0.05: a person decides" in check.reason
        assert decision.to_dict()["needs_review"] is True
    # What the holdout does settle is not sent to anyone.
    beyond = decide_promotion(_with_precision_interval(0.12, 0.07, 0.17), review)
    assert (beyond.promote, beyond.needs_review) == (False, False)
    within = decide_promotion(_with_precision_interval(0.01, -0.02, 0.04), review)
    assert (within.promote, within.needs_review) == (True, False)
    # A challenger that fails another rule is not promoted, review or not.
    losing = replace(
        _with_precision_interval(0.02, -0.03, 0.09), difference=Difference("pr_auc", 0.02, -0.01, 0.05, 0.95, 0.2, 1000)
    )
    assert decide_promotion(losing, review).promote is False
    assert decide_promotion(losing, review).needs_review is False


def test_a_lower_is_better_guardrail_reads_its_interval_the_right_way_round() -> None:
    # ece rose by 0.02 (worse); the bootstrap's difference challenger - champion is [+0.015, +0.025].
    comparison = replace(
        _comparison(challenger={"ece": BASE.ece + 0.02}),
        guardrail_differences={"ece": Difference("ece", 0.02, 0.015, 0.025, 0.95, 1.0, 1000)},
    )
    [check] = [c for c in decide_promotion(comparison, SPEC).checks if c.name == "guardrail.ece"]
    assert check.passed is False
    assert "interval [+0.0150, +0.0250], lower is better) exceeds max_regression 0.01" in check.reason
