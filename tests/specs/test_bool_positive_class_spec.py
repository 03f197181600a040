"""data.positive_class of a bool label: one of the values a bool column holds, as its data may spell them.

Validation reads a bool column's true/false, 1/0, yes/no, y/n and t/f in any case (shared/typecast.py), and so do
training and the live checks. A positive class outside them (``maybe``, ``2``) names a class no row can have:
``perennial spec check`` refuses it, saying which values a bool label takes and that ``true`` is the usual choice.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]


def _bool_label(positive_class: Any) -> dict[str, Any]:
    """models/fraud.yaml with is_fraud declared bool, and ``positive_class`` as given (the key left out for None)."""
    document: dict[str, Any] = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    document["data"]["columns"][-1] = {"name": "is_fraud", "type": "bool", "nullable": False}
    assert document["data"]["label"] == "is_fraud"
    if positive_class is None:
        document["data"].pop("positive_class")
    else:
        document["data"]["positive_class"] = positive_class
    return document


@pytest.mark.parametrize(
    "positive_class",
    [None, True, False, 1, 0, "true", "False", "1", "0", "yes", "No", "Y", "n", "t", "F", " yes "],
)
def test_every_bool_spelling_is_a_bool_label_s_positive_class(positive_class: Any) -> None:
    spec = parse_spec(_bool_label(positive_class), "fraud.yaml")
    assert spec.data.positive_class == (1 if positive_class is None else positive_class)


@pytest.mark.parametrize("positive_class", ["maybe", 2, -1, "2", "1.0", "fraud", "", "yess", "oui"])
def test_anything_else_is_refused_naming_the_values_a_bool_label_takes(positive_class: Any) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec(_bool_label(positive_class), "fraud.yaml")
    message = str(refused.value)
    assert f"data.positive_class={positive_class!r} is not a value of the bool label 'is_fraud'" in message
    assert "use true (the usual choice) or false" in message
    assert "1/0, yes/no, y/n and t/f, in any case" in message


def test_a_spec_file_with_positive_class_maybe_fails_its_check(tmp_path: Path) -> None:
    """As ``perennial spec check`` reads the file: YAML reads an unquoted yes/no as a boolean, maybe as text."""
    text = (ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "    - {name: is_fraud, type: int, nullable: false, min: 0, max: 1}", "    - {name: is_fraud, type: bool}"
    )
    (tmp_path / "fraud.yaml").write_text(text.replace("positive_class: 1", "positive_class: maybe"), encoding="utf-8")
    with pytest.raises(SpecError, match=re.escape("data.positive_class='maybe' is not a value of the bool label")):
        load_spec(tmp_path / "fraud.yaml")
    (tmp_path / "fraud.yaml").write_text(text.replace("positive_class: 1", "positive_class: yes"), encoding="utf-8")
    assert load_spec(tmp_path / "fraud.yaml").data.positive_class is True


def test_other_labels_are_judged_as_before() -> None:
    """The bool rule is for bool labels: an int label still takes 2 within its range, a category label its own."""
    document = _bool_label(2)
    document["data"]["columns"][-1] = {"name": "is_fraud", "type": "int", "nullable": False, "min": 0, "max": 2}
    assert parse_spec(document, "fraud.yaml").data.positive_class == 2
    document = _bool_label("maybe")
    document["data"]["columns"][-1] = {"name": "is_fraud", "type": "category", "categories": ["no", "maybe"]}
    assert parse_spec(document, "fraud.yaml").data.positive_class == "maybe"


@pytest.mark.parametrize(("cls", "accepted"), [(True, True), ("false", True), (1, True), ("yes", False), ("N", False)])
def test_a_bool_label_s_guardrail_class_is_true_or_false(cls: object, accepted: bool) -> None:
    """evaluate.py writes a bool label's classes as 0 and 1, and the policy finds a guardrail's class among them as
    training spells labels: yes or N would never be found, so every run would fail the guardrail."""
    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    for column in document["data"]["columns"]:
        if column["name"] == "is_fraud":
            column.clear()
            column.update({"name": "is_fraud", "type": "bool", "nullable": False})
    document["data"]["positive_class"] = "yes"
    document["promotion"]["guardrails"] = [{"metric": "recall", "class": cls, "max_regression": 0.05}]
    if accepted:
        parse_spec(document, "fraud.yaml")
        return
    with pytest.raises(SpecError, match="use class: true or class: false"):
        parse_spec(document, "fraud.yaml")
