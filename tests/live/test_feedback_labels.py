"""Which delayed labels the live checks can place (shared.feedback.label_problems), as `perennial feedback` checks
a label file before it uploads it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.feedback import FeedbackHeaderError, declared_classes, feedback_rows, label_problems
from shared.spec import ColumnSpec, DataContract, label_key, parse_spec

ROOT = Path(__file__).resolve().parents[2]


def contract(label: dict[str, Any], positive: Any = 1, task: str = "binary") -> DataContract:
    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    document["task"] = task
    data = document["data"]
    data["columns"] = [c if c["name"] != data["label"] else {"name": c["name"], **label} for c in data["columns"]]
    if task == "multiclass":
        data.pop("positive_class", None)
    else:
        data["positive_class"] = positive
    return parse_spec(document, "fraud.yaml").data


def problems(labels: list[str], data: DataContract, task: str = "binary") -> dict[str, str]:
    return {p.value: p.why for p in label_problems(labels, data, task)}


def test_a_binary_label_that_is_neither_class_is_named_as_counted_negative() -> None:
    int_label = contract({"type": "int", "min": 0, "max": 1})
    assert problems(["1", "0", "1.0", "true", "false", " 0 "], int_label) == {}
    found = problems(["1", "yes", "yes", "Fraud"], int_label)
    assert list(found) == ["yes", "Fraud"]  # most frequent first
    assert "counted as negative" in found["yes"]
    assert "1 or 0" in found["yes"]
    bool_label = contract({"type": "bool"}, positive=True)
    assert problems(["true", "False", "0", "yes", "N"], bool_label) == {}  # as the bool column reads them
    assert list(problems(["true", "maybe"], bool_label)) == ["maybe"]
    named = contract({"type": "category", "categories": ["legit", "fraud"]}, positive="fraud")
    assert problems(["fraud", "legit"], named) == {}
    assert list(problems(["fraud", "Fraud", "chargeback"], named)) == ["Fraud", "chargeback"]


def test_a_binary_label_whose_negative_class_the_spec_does_not_name_is_not_judged() -> None:
    free = contract({"type": "string"}, positive="fraud")
    assert problems(["fraud", "legit", "anything"], free) == {}
    assert problems(["1", "-1"], contract({"type": "int"}, positive=1)) == {}  # no min..max: any other value


def test_an_int_label_s_two_classes_are_its_min_and_max() -> None:
    assert problems(["1", "-1"], contract({"type": "int", "min": -1, "max": 1})) == {}  # -1..1 is three: not judged
    signed = contract({"type": "category", "categories": ["-1", "1"]}, positive=1)
    assert problems(["1", "-1"], signed) == {}
    assert problems(["1", "2"], contract({"type": "int", "min": 1, "max": 2}, positive=1)) == {}
    assert list(problems(["1", "0"], contract({"type": "int", "min": 1, "max": 2}, positive=1))) == ["0"]


def test_a_multiclass_label_must_be_a_class_index_of_the_declared_classes() -> None:
    tickets = contract({"type": "category", "categories": ["sales", "billing", "abuse"]}, task="multiclass")
    assert problems(["0", "1", "2"], tickets, "multiclass") == {}
    found = problems(["billing", "3", "-1", "refund", "²"], tickets, "multiclass")
    assert "not a class index" in found["²"]
    assert found["billing"] == "a class spelt by its value: write its index, 1"  # abuse, billing, sales
    assert problems(["Sales"], tickets, "multiclass")["Sales"].endswith("(in another case): write its index, 2")
    assert found["3"] == "no class has index 3 (3 classes)"
    assert "-1" in found
    assert "not a class index" in found["refund"]


def test_int_classes_are_indexed_as_training_sorts_them() -> None:
    """score.py's indexes follow training's sorted class list, as text: for 0..10 the index of class 10 is 2."""
    from training_jobs.contract import parse_contract
    from training_jobs.data import _declared_classes as trained

    for label in (
        {"type": "int", "min": 0, "max": 10},
        {"type": "int", "min": 2, "max": 9},
        {"type": "category", "categories": ["b", "a", "10", "2"]},
        {"type": "category", "categories": ["true", "false", "maybe"]},  # training spells true 1: index 1
        {"type": "int", "min": 0, "max": 10**6},
        {"type": "float", "min": 0, "max": 1},
    ):
        column = {"name": "y", "nullable": False, "feature": True, **label}
        feature = {"name": "x", "type": "float", "nullable": True, "feature": True}
        job_column = parse_contract({"columns": [feature, column], "label": "y"}).column("y")
        ours = [label_key(c) for c in declared_classes(ColumnSpec.model_validate(column))]
        assert ours == (trained(job_column) or []), label
    assert declared_classes(ColumnSpec.model_validate({"name": "y", "type": "int", "min": 0, "max": 10}))[2] == "10"


def test_a_csv_without_the_two_columns_cannot_be_read() -> None:
    with pytest.raises(FeedbackHeaderError, match=r"no request_id and label columns \(header: \['id', 'y'\]\)"):
        list(feedback_rows(io.BytesIO(b"id,y\nr1,1\n"), "labels.csv"))
    long_line = b"r2," + b"x" * 70_000 + b"\n"
    rows = list(feedback_rows(io.BytesIO(b"request_id,label\nr1,1\n" + long_line + b"r3,0\n"), "x.csv"))
    assert [r.request_id if r else None for r in rows] == ["r1", "r3", None], "the over-long line is counted"
    rows = list(feedback_rows(io.BytesIO(b'{"request_id": "r1", "label": 1}\nnot json\n{"label": 0}\n'), "x.jsonl"))
    assert [r.label if r else None for r in rows] == ["1", None, None]
