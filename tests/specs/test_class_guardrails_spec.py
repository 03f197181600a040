"""promotion.guardrails[].class: a guardrail on one class of the label names a per-class metric and a class the
model predicts, once; the evaluation job is asked for its bootstrap without changing what class-less guardrails ask."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.jobs import StagedInputs, evaluation_job
from shared.platform import JobInput
from shared.spec import ModelSpec, SpecError, load_specs, parse_spec

ROOT = Path(__file__).resolve().parents[2]
INPUTS = StagedInputs(
    data=JobInput("/d", "uri_folder"),
    manifest=JobInput("/m.json", "uri_file"),
    contract=JobInput("/c.json", "uri_file"),
)
TOPICS = ["billing", "urgent", "sales", "01", "a:b, c"]


def _fraud(*guardrails: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    document["promotion"]["guardrails"] = list(guardrails)
    return document


def _router(*guardrails: dict[str, Any], label: dict[str, Any] | None = None) -> dict[str, Any]:
    """A multiclass ticket router; ``label``: the label column's declaration (default: category TOPICS)."""
    document = _fraud(*guardrails)
    document["task"] = "multiclass"
    document["data"]["columns"][-1] = {
        "name": "is_fraud",
        "nullable": False,
        **(label or {"type": "category", "categories": TOPICS}),
    }
    return document


def _refused(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(document, "x.yaml")
    return [p.removeprefix("x.yaml: ") for p in caught.value.problems]


def _guardrail(metric: str, cls: Any, limit: float = 0.02) -> dict[str, Any]:
    return {"metric": metric, "class": cls, "max_regression": limit}


def test_a_multiclass_guardrail_names_a_declared_category_as_the_contract_spells_it() -> None:
    spec = parse_spec(
        _router(_guardrail("recall", "urgent"), _guardrail("f1", "01"), _guardrail("precision", "a:b, c")), "x"
    )
    assert [(g.metric, g.class_name) for g in spec.promotion.guardrails] == [
        ("recall", "urgent"),
        ("f1", "01"),
        ("precision", "a:b, c"),
    ]
    [problem] = _refused(_router(_guardrail("recall", "Urgent")))
    assert problem == (
        "promotion.guardrails[0].class='Urgent' is not a category of the label 'is_fraud' (use one of the label's "
        f"categories {TOPICS})"
    )
    # YAML reads an unquoted code as a number (010 as 8): the hint says to quote it, as for categories.
    [problem] = _refused(_router(_guardrail("recall", yaml.safe_load("010"))))
    assert problem.startswith("promotion.guardrails[0].class=8 is not a category")
    assert 'quote a code as the data spells it, e.g. class: "01"' in problem


def test_only_precision_recall_and_f1_can_be_judged_on_one_class() -> None:
    [problem] = _refused(_router(_guardrail("pr_auc", "urgent")))
    assert problem.startswith("promotion.guardrails[0].metric='pr_auc' cannot be judged on one class")
    assert "with class, use one of precision, recall, f1" in problem
    [problem] = _refused(_router(_guardrail("recal", "urgent")))
    assert "did you mean 'recall'?" in problem


def test_an_int_label_declared_by_min_and_max_takes_a_number_in_its_range() -> None:
    label = {"type": "int", "min": 0, "max": 3}
    spec = parse_spec(_router(_guardrail("recall", 3), _guardrail("f1", "2"), label=label), "x")
    assert [g.class_name for g in spec.promotion.guardrails] == ["3", "2"]
    problems = _refused(_router(_guardrail("recall", 4), _guardrail("f1", "two"), label=label))
    assert problems == [
        "promotion.guardrails[0].class=4 is not a whole number in the range of the label 'is_fraud', [0, 3] "
        '(use a class from 0 to 3, e.g. 0 (or "0"))',
        "promotion.guardrails[1].class='two' is not a whole number in the range of the label 'is_fraud', [0, 3] "
        '(use a class from 0 to 3, e.g. 0 (or "0"))',
    ]
    [problem] = _refused(_router(_guardrail("recall", "a"), label={"type": "string"}))
    assert "which declares none" in problem
    assert "declare the label's classes" in problem


def test_a_binary_guardrail_names_the_positive_class_or_the_other_declared_one() -> None:
    spec = parse_spec(_fraud(_guardrail("recall", 1), _guardrail("precision", "0"), _guardrail("recall", 0)), "x")
    assert [g.class_name for g in spec.promotion.guardrails] == ["1", "0", "0"]
    [problem] = _refused(_fraud(_guardrail("recall", 2)))
    assert problem == (
        "promotion.guardrails[0].class=2 is not a class of the binary label 'is_fraud' (use 1 (the positive class) or 0)"
    )
    # A label that does not declare its other value: only the positive class can be named.
    undeclared = _fraud(_guardrail("recall", "legit"))
    undeclared["data"]["columns"][-1] = {"name": "is_fraud", "type": "string", "nullable": False}
    undeclared["data"]["positive_class"] = "fraud"
    [problem] = _refused(undeclared)
    assert "use 'fraud' (the positive class); to name the other class, declare the label's two values" in problem
    # A bool label's classes are true and false.
    boolean = _fraud(_guardrail("recall", True), _guardrail("precision", False))
    boolean["data"]["columns"][-1] = {"name": "is_fraud", "type": "bool", "nullable": False}
    boolean["data"]["positive_class"] = True
    assert [g.class_name for g in parse_spec(boolean, "x").promotion.guardrails] == ["true", "false"]


def test_two_guardrails_on_one_metric_and_class_are_refused() -> None:
    problems = _refused(_fraud(_guardrail("recall", 1), _guardrail("precision", 1), _guardrail("recall", "1.0")))
    assert problems == [
        "promotion.guardrails[2].class='1.0' repeats promotion.guardrails[0] (the same metric recall on the same "
        "class) (keep one guardrail per metric and class)"
    ]


def test_a_class_the_job_command_line_would_substitute_is_refused() -> None:
    [problem] = _refused(
        _router(_guardrail("recall", "{inputs.data}"), label={"type": "category", "categories": ["{inputs.data}", "x"]})
    )
    assert problem.startswith("promotion.guardrails[0].class='{inputs.data}' holds")


def test_the_yaml_key_is_class_and_the_model_stays_strict() -> None:
    [problem] = _refused(_fraud({"metric": "recall", "class_": 1, "max_regression": 0.02}))
    assert problem.startswith("promotion.guardrails[0].class_ is not a known field")
    assert "known fields here: class, max_regression, metric" in problem
    [problem] = _refused(_fraud({"metric": "recall", "class": [1], "max_regression": 0.02}))
    assert problem.startswith("promotion.guardrails[0].class=[1] should be text, a number or true/false (judge the")
    spec = parse_spec(_fraud(_guardrail("recall", 1)), "x")
    dumped = spec.model_dump(mode="json")
    assert dumped["promotion"]["guardrails"] == [{"metric": "recall", "max_regression": 0.02, "class": 1}]
    assert ModelSpec.model_validate(dumped) == spec
    schema = ModelSpec.model_json_schema()["$defs"]["Guardrail"]
    assert set(schema["properties"]) == {"metric", "max_regression", "class"}
    assert schema["additionalProperties"] is False
    json.dumps(schema)


def test_existing_specs_stay_valid_and_their_evaluation_argv_is_unchanged() -> None:
    specs = load_specs(ROOT / "models")
    fraud = specs["fraud"]
    assert all(g.class_ is None for g in fraud.promotion.guardrails)
    args = evaluation_job(fraud, "run-eval", INPUTS, "/challenger", "azureml:fraud:3", "run").args
    assert args[args.index("--guardrail-metrics") :] == (
        "--guardrail-metrics", "precision,recall", "--guardrail-confidence", "0.975", "--champion", "{inputs.champion}"
    )  # fmt: skip
    assert "--class-guardrail" not in args


def test_per_class_guardrails_get_an_option_each_and_count_in_the_bonferroni_correction() -> None:
    document = _router({"metric": "f1", "max_regression": 0.05}, _guardrail("recall", "a:b, c"), _guardrail("f1", "01"))
    spec = parse_spec(document, "x")
    args = list(evaluation_job(spec, "e", INPUTS, "/c", None, "run").args)
    assert args[args.index("--guardrail-metrics") :] == [
        "--guardrail-metrics", "f1",
        "--class-guardrail", "recall:a:b, c",
        "--class-guardrail", "f1:01",
        "--guardrail-confidence", f"{1 - 0.05 / 3:.6g}",
    ]  # fmt: skip
    only_classes = parse_spec(_router(_guardrail("recall", "urgent")), "x")
    args = list(evaluation_job(only_classes, "e", INPUTS, "/c", None, "run").args)
    assert "--guardrail-metrics" not in args
    assert args[args.index("--class-guardrail") :] == [
        "--class-guardrail", "recall:urgent", "--guardrail-confidence", "0.95"
    ]  # fmt: skip


def test_a_class_yaml_read_as_a_boolean_says_to_quote_it() -> None:
    """`class: no` is false to YAML: the refusal says to quote it, as the data spells the category."""
    document = _router(_guardrail("recall", False), label={"type": "category", "categories": ["yes", "no", "maybe"]})
    [problem] = _refused(document)
    assert 'quote it, e.g. class: "no": YAML reads an unquoted yes, no, true or false as a boolean' in problem
    assert parse_spec(_router(_guardrail("recall", "no"), label={"type": "category", "categories": ["yes", "no"]}), "x")
