"""Per-class guardrails in the promotion policy: comparison.json's ``per_class`` and ``class_guardrail_differences``
are read strictly (an older file without them still parses), and each guardrail with a ``class`` is judged exactly
like a metric guardrail, on that class's one-vs-rest value."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.policy import PolicyInputError, decide_promotion, parse_comparison
from shared.spec import PromotionSpec
from tests.policy.test_comparison import VALID

URGENT = "urgent: p1, now"


def _classes(urgent_recall: float, support: int = 150) -> dict[str, dict[str, Any]]:
    if not support:
        urgent = {"precision": None, "recall": None, "f1": None, "support": 0}
    else:
        urgent = {"precision": 0.9, "recall": urgent_recall, "f1": 0.8, "support": support}
    return {"billing": {"precision": 0.7, "recall": 0.8, "f1": 0.75, "support": 400}, URGENT: urgent}


def _comparison(
    *, champion: float = 0.70, challenger: float = 0.68, interval: tuple[float, float] | None = None, support: int = 150
) -> dict[str, Any]:
    """VALID (a clear pr_auc win, every metric guardrail held) with urgent's recall going from ``champion`` to
    ``challenger``; ``interval``: the bootstrap's (challenger − champion) interval of it, if any."""
    doc = copy.deepcopy(VALID)
    doc["per_class"] = {"challenger": _classes(challenger, support), "champion": _classes(champion, support)}
    doc["class_guardrail_differences"] = []
    if interval is not None:
        doc["class_guardrail_differences"].append(
            {
                "metric": "recall",
                "class": URGENT,
                "estimate": challenger - champion,
                "ci_low": interval[0],
                "ci_high": interval[1],
                "confidence": 0.975,
                "p_value": 0.6,
                "bootstrap_samples": 1000,
            }
        )
    return doc


def _spec(review: bool = False, **guardrail: Any) -> PromotionSpec:
    guardrails = [
        {"metric": "precision", "max_regression": 0.05},
        {"metric": "recall", "class": URGENT, "max_regression": 0.05, **guardrail},
    ]
    return PromotionSpec.model_validate({"guardrails": guardrails, "review_uncertain_guardrails": review})


def _check(doc: dict[str, Any], spec: PromotionSpec, name: str = f"guardrail.recall[{URGENT}]") -> Any:
    decision = decide_promotion(parse_comparison(doc), spec)
    [check] = [c for c in decision.checks if c.name == name]
    return decision, check


@pytest.mark.parametrize(
    ("drop", "interval", "passed", "settled", "says"),
    [
        (0.02, (-0.04, 0.02), True, True, "within max_regression 0.05"),
        (0.30, (-0.38, -0.22), False, True, "exceeds max_regression 0.05"),
        (0.02, (-0.10, 0.05), True, False, "within max_regression 0.05 on the point estimate (the holdout cannot"),
        (0.08, (-0.15, 0.00), False, False, "exceeds max_regression 0.05 on the point estimate (the holdout cannot"),
    ],
    ids=["settled-within", "settled-beyond", "unsettled-small-drop", "unsettled-large-drop"],
)
def test_a_class_guardrail_is_judged_like_a_metric_guardrail(
    drop: float, interval: tuple[float, float], passed: bool, settled: bool, says: str
) -> None:
    decision, check = _check(_comparison(challenger=0.70 - drop, interval=interval), _spec())
    assert check.passed is passed
    assert check.reason.startswith(f"recall of class {URGENT!r} 0.7000 → {0.70 - drop:.4f} (regression +{drop:.4f}")
    assert says in check.reason, check.reason
    assert "97.5% interval" in check.reason
    assert check.evidence["class"] == URGENT
    assert check.evidence["settled"] is settled
    assert check.evidence["regression_ci_low"] == pytest.approx(-interval[1])
    assert decision.promote is passed
    assert (f"recall of class {URGENT!r}" in decision.summary) is not passed


def test_an_unsettled_class_guardrail_goes_to_a_person_under_review_uncertain_guardrails() -> None:
    decision, check = _check(_comparison(challenger=0.62, interval=(-0.15, 0.00)), _spec(review=True))
    assert check.passed is True
    assert "the holdout cannot settle it against max_regression 0.05: a person decides" in check.reason
    assert (decision.promote, decision.needs_review) == (True, True)
    assert f"cannot settle guardrail recall[{URGENT}]" in decision.summary
    # Settled beyond is refused, review or not.
    refused, _ = _check(_comparison(challenger=0.40, interval=(-0.38, -0.22)), _spec(review=True))
    assert (refused.promote, refused.needs_review) == (False, False)


def test_without_its_bootstrap_a_class_guardrail_is_judged_on_the_point_estimate() -> None:
    """As a metric guardrail without a ``guardrail_differences`` entry: evaluate.py was not asked for it (the spec
    gained the guardrail after the evaluation was submitted)."""
    _, within = _check(_comparison(challenger=0.68), _spec())
    assert (within.passed, within.evidence["settled"]) == (True, True)
    assert "interval" not in within.reason
    _, beyond = _check(_comparison(challenger=0.60), _spec())
    assert beyond.passed is False
    assert beyond.reason.endswith("exceeds max_regression 0.05")


def test_classes_are_matched_as_training_spells_labels() -> None:
    doc = _comparison()
    for role in ("challenger", "champion"):
        doc["per_class"][role]["1"] = doc["per_class"][role].pop(URGENT)
    for spelt in (1, "1", "1.0", " 1"):
        _, check = _check(doc, _spec(**{"class": spelt}), name=f"guardrail.recall[{spelt}]")
        assert check.passed is True
        assert check.evidence["champion"] == 0.70


def test_an_older_comparison_without_per_class_values_parses_and_fails_only_the_class_guardrail() -> None:
    comparison = parse_comparison(copy.deepcopy(VALID))
    assert comparison.challenger_per_class is None
    assert comparison.class_guardrail_differences == {}
    decision = decide_promotion(comparison, _spec())
    checks = {c.name: c for c in decision.checks}
    assert checks["guardrail.precision"].passed
    failed = checks[f"guardrail.recall[{URGENT}]"]
    assert failed.passed is False
    assert "comparison.json has no per-class values of this class" in failed.reason
    assert "re-run the evaluation" in failed.reason
    assert decision.promote is False
    # Without a class guardrail an older file decides as before.
    assert decide_promotion(comparison, PromotionSpec()).promote is True


def test_a_class_the_holdout_has_no_row_of_cannot_be_shown_to_hold() -> None:
    doc = _comparison(support=0)
    decision, check = _check(doc, _spec())
    assert check.passed is False
    assert "the holdout has no row of this class" in check.reason
    assert "review_uncertain_guardrails" in check.reason
    assert check.evidence["settled"] is False
    assert decision.promote is False
    reviewed, check = _check(doc, _spec(review=True))
    assert check.passed is True
    assert (reviewed.promote, reviewed.needs_review) == (True, True)


def test_a_first_run_has_per_class_values_of_the_challenger_alone() -> None:
    doc = dict(copy.deepcopy(VALID), champion=None, difference=None, mcnemar=None)
    doc["per_class"] = {"challenger": _classes(0.7), "champion": None}
    comparison = parse_comparison(doc)
    assert comparison.challenger_per_class is not None
    assert comparison.challenger_per_class[URGENT].recall == 0.7
    assert comparison.champion_per_class is None
    assert decide_promotion(comparison, _spec()).first_run


def _broken(path: str, value: Any) -> dict[str, Any]:
    doc = _comparison(interval=(-0.06, 0.02))
    node: Any = doc
    *parents, last = path.split("/")
    for part in parents:
        node = node[int(part) if isinstance(node, list) else part]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("class_guardrail_differences", {}, "must be a JSON list"),
        (
            "class_guardrail_differences/0/metric",
            "accuracy",
            "class_guardrail_differences[0].metric='accuracy' must be",
        ),
        ("class_guardrail_differences/0/class", "refunds", "must be a class of per_class.challenger"),
        ("class_guardrail_differences/0/class", 3, "must be a non-empty string"),
        ("class_guardrail_differences/0/class", KeyError, "is missing class"),
        ("class_guardrail_differences/0/ci_low", 0.5, "must not exceed ci_high"),
        ("class_guardrail_differences/0/extra", 1, "has unknown keys extra"),
        ("per_class/champion", None, "per_class.champion=None must be an object of class -> values"),
        ("per_class/challenger/billing/recall", 1.5, "must be in [0, 1]"),
        ("per_class/challenger/billing/recall", None, "null exactly when support is 0"),
        ("per_class/challenger/billing/support", -1, "must be a whole number >= 0"),
        ("per_class/champion/billing", KeyError, "must name the same classes as per_class.challenger"),
        ("per_class/challenger", {}, "must be a non-empty JSON object"),
        ("per_class/extra", {}, "has unknown keys extra"),
    ],
)
def test_malformed_per_class_values_are_rejected_naming_the_field(path: str, value: Any, expected: str) -> None:
    with pytest.raises(PolicyInputError) as refused:
        parse_comparison(_broken(path, value))
    assert expected in str(refused.value)


def test_a_repeated_entry_or_one_without_a_champion_is_rejected() -> None:
    doc = _comparison(interval=(-0.06, 0.02))
    doc["class_guardrail_differences"].append(copy.deepcopy(doc["class_guardrail_differences"][0]))
    with pytest.raises(PolicyInputError, match="repeats an earlier entry's metric and class"):
        parse_comparison(doc)
    alone = _comparison(interval=(-0.06, 0.02))
    alone.update(champion=None, difference=None, mcnemar=None)
    alone["per_class"]["champion"] = None
    with pytest.raises(PolicyInputError, match="must be empty when there is no champion"):
        parse_comparison(alone)
