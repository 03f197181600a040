"""comparison.json, as written by training_jobs/evaluate.py, is parsed into dataclasses or rejected clearly."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from shared.policy import PolicyInputError, load_comparison, parse_comparison

METRICS = {"accuracy": 0.97, "precision": 0.8, "recall": 0.7, "f1": 0.75, "roc_auc": 0.95, "pr_auc": 0.6, "ece": 0.02}
VALID: dict[str, Any] = {
    "primary_metric": "pr_auc",
    "n_holdout": 5000,
    "challenger": dict(METRICS),
    "champion": dict(METRICS, pr_auc=0.588),
    "difference": {
        "metric": "pr_auc",
        "estimate": 0.012,
        "ci_low": 0.003,
        "ci_high": 0.021,
        "confidence": 0.95,
        "p_value": 0.01,
        "bootstrap_samples": 1000,
    },
    "mcnemar": {"b": 12, "c": 30, "statistic": 7.7, "p_value": 0.005},
}


def test_the_documented_shape_parses() -> None:
    comparison = load_comparison(json.dumps(VALID))
    assert comparison.primary_metric == "pr_auc"
    assert comparison.n_holdout == 5000
    assert comparison.challenger.pr_auc == 0.6
    assert comparison.champion is not None
    assert comparison.champion.pr_auc == 0.588
    assert comparison.difference is not None
    assert comparison.difference.ci_low == 0.003
    assert comparison.mcnemar is not None
    assert comparison.mcnemar.c == 30


def test_a_first_run_has_no_champion_difference_or_mcnemar() -> None:
    doc = dict(VALID, champion=None, difference=None, mcnemar=None)
    comparison = parse_comparison(doc)
    assert comparison.champion is None
    assert comparison.difference is None


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    doc = copy.deepcopy(VALID)
    doc["challenger"]["accuracy"] = 1
    assert parse_comparison(doc).challenger.accuracy == 1.0


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target[part]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("primary_metric", "auc", "primary_metric='auc' must be one of"),
        ("n_holdout", 0, "n_holdout=0 must be a whole number >= 1"),
        ("n_holdout", 12.5, "n_holdout=12.5 must be a whole number"),
        ("challenger.pr_auc", "0.6", "challenger.pr_auc='0.6' must be a finite number"),
        ("challenger.pr_auc", float("nan"), "challenger.pr_auc=nan must be a finite number"),
        ("challenger.pr_auc", True, "challenger.pr_auc=True must be a finite number"),
        ("challenger.recall", 1.5, "challenger.recall=1.5 must be in [0, 1]"),
        ("challenger.ece", _DELETE, "challenger='{...}' is missing ece"),
        ("champion.log_loss", 0.1, "champion='{...}' has unknown keys log_loss"),
        ("difference.metric", "roc_auc", "difference.metric='roc_auc' must equal primary_metric 'pr_auc'"),
        ("difference.ci_low", 0.05, "difference.ci_low=0.05 must not exceed ci_high=0.021"),
        ("difference.p_value", -0.1, "difference.p_value=-0.1 must be in [0, 1]"),
        ("difference.bootstrap_samples", 0, "bootstrap_samples=0 must be a whole number >= 1"),
        ("difference", None, "difference=None is required when there is a champion"),
        ("mcnemar.b", -1, "mcnemar.b=-1 must be a whole number >= 0"),
        ("mcnemar", [], "mcnemar=[] must be a JSON object"),
        ("extra", 1, "has unknown keys extra"),
        ("champion", _DELETE, "is missing champion"),
        ("n_positive", -1, "n_positive=-1 must be a whole number >= 0"),
        ("holdout", "10%", "holdout='10%' must be a JSON object"),
        ("guardrail_differences", [], "guardrail_differences=[] must be a JSON object of metric -> difference"),
        ("guardrail_differences", {"log_loss": {}}, "guardrail_differences='log_loss' must name metrics among"),
        (
            "guardrail_differences",
            {"recall": dict(VALID["difference"], metric="precision")},
            "guardrail_differences.recall.metric='precision' must be 'recall'",
        ),
    ],
)
def test_malformed_input_is_rejected_naming_the_field(path: str, value: Any, expected: str) -> None:
    with pytest.raises(PolicyInputError) as caught:
        parse_comparison(_with(path, value))
    assert expected in str(caught.value)
    assert "evaluate.py" in caught.value.hint


def test_the_holdouts_rarest_class_and_rule_are_read_when_present() -> None:
    holdout = {"fraction": 0.1, "rule": "blake2b(key)"}
    comparison = parse_comparison(_with("holdout", holdout) | {"n_positive": 42})
    assert (comparison.n_positive, comparison.holdout) == (42, holdout)
    assert parse_comparison(_with("n_positive", None)).n_positive is None


def test_the_guardrails_bootstrap_is_read_when_present() -> None:
    recall = dict(VALID["difference"], metric="recall", estimate=-0.02, ci_low=-0.09, ci_high=0.04)
    comparison = parse_comparison(_with("guardrail_differences", {"recall": recall}))
    assert comparison.guardrail_differences["recall"].ci_low == -0.09
    assert parse_comparison(VALID).guardrail_differences == {}, "an older comparison.json has none"
    first_run = dict(VALID, champion=None, difference=None, mcnemar=None, guardrail_differences={"recall": recall})
    with pytest.raises(PolicyInputError, match="must be empty when there is no champion"):
        parse_comparison(first_run)


def test_not_json_is_rejected_with_a_hint() -> None:
    with pytest.raises(PolicyInputError, match="not valid JSON"):
        load_comparison("{not json")


def test_a_json_array_is_rejected() -> None:
    with pytest.raises(PolicyInputError, match="must be a JSON object"):
        load_comparison("[1, 2]")


# --------------------------------------------------------------------------- a champion that could not be scored

UNSCORABLE = dict(
    VALID,
    champion=None,
    difference=None,
    mcnemar=None,
    champion_unscorable="the champion /mnt/champion (run id run-7) cannot be loaded: model.safetensors is truncated",
)


def test_a_champion_that_could_not_be_scored_is_read_with_its_reason() -> None:
    comparison = parse_comparison(UNSCORABLE)
    assert comparison.champion is None
    assert comparison.champion_unscorable == UNSCORABLE["champion_unscorable"]
    assert parse_comparison(VALID).champion_unscorable is None
    assert parse_comparison(dict(VALID, champion_unscorable=None)).champion_unscorable is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, "champion_unscorable=42 must be a non-empty string"),
        (["broken"], "must be a non-empty string"),
        ("  ", "must be a non-empty string"),
        ("x" * 2001, "must be at most 2000 characters"),
    ],
)
def test_a_bad_unscorable_reason_is_rejected(value: object, expected: str) -> None:
    with pytest.raises(PolicyInputError, match=expected):
        parse_comparison(dict(UNSCORABLE, champion_unscorable=value))


def test_an_unscorable_champion_cannot_come_with_champion_metrics() -> None:
    with pytest.raises(PolicyInputError, match="must come with champion, difference and mcnemar null"):
        parse_comparison(dict(VALID, champion_unscorable="broken"))


def test_null_champion_metrics_say_the_champion_could_not_be_scored_and_what_to_do() -> None:
    # An older evaluate.py wrote a NaN-outputting champion as nulls: "regenerate it" would reproduce the file.
    doc = copy.deepcopy(VALID)
    doc["champion"] = dict.fromkeys(METRICS)
    doc["difference"].update(ci_low=None, ci_high=None, p_value=None, bootstrap_samples=0)
    with pytest.raises(PolicyInputError) as caught:
        parse_comparison(doc)
    assert "champion.accuracy=None: the champion has no score for accuracy, precision" in str(caught.value)
    hint = caught.value.hint
    assert "the champion (the version now serving) could not be scored" in hint
    assert "/rollout" in hint
    assert "perennial rollout" in hint
    assert "champion_unscorable" in hint
    assert not hint.startswith("regenerate")
