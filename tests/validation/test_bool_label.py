"""A bool label's positive class, read with every spelling the column's cast reads, and nothing else.

The label's cells are cast to true/false (yes/no, y/n, t/f, 1/0 in any case); its positive class is read the same
way. A positive class that is no bool spelling (``maybe``: the spec check refuses it, but a contract may be built
without that check) used to read as false, quietly making the other class positive: it is a class no row has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.spec import DataContract
from shared.validation import ValidationReport, validate
from tests.validation.conftest import good_rows, rows_to_csv, small_contract

SPELT = {True: ["yes", "Y", "true", "1", "T"], False: ["no", "N", "false", "0", "f"]}


def _contract(positive_class: Any) -> DataContract:
    contract = small_contract(min_label_share=0.05)
    columns = [c.model_dump() for c in contract.columns if c.name != "y"]
    label = {"name": "y", "type": "bool", "nullable": False}
    return small_contract(min_label_share=0.05, columns=[*columns, label], positive_class=positive_class)


def _validate(tmp_path: Path, positive_class: Any, truths: list[bool]) -> ValidationReport:
    rows = [{**r, "y": SPELT[t][i % 5]} for i, (r, t) in enumerate(zip(good_rows(len(truths)), truths, strict=True))]
    return validate(rows_to_csv(tmp_path / "b.csv", rows), _contract(positive_class), task="binary")


def _imbalance(report: ValidationReport) -> str:
    found = [f.message for f in report.findings if f.check == "label_imbalance"]
    assert len(found) == 1, report.summary()
    return found[0]


@pytest.mark.parametrize("positive_class", [True, 1, "true", "yes", "Y", "y", "T", " yes "])
def test_a_true_positive_class_in_any_spelling_is_the_true_class(tmp_path: Path, positive_class: Any) -> None:
    """Every row is false: the positive class, true however it is spelt, is missing."""
    report = _validate(tmp_path, positive_class, [False] * 200)
    assert "every labelled row has the label 'false' (positive class 'true')" in _imbalance(report)


@pytest.mark.parametrize("positive_class", ["no", "n", "N", "f", "0", 0, False])
def test_a_false_positive_class_in_any_spelling_is_the_false_class(tmp_path: Path, positive_class: Any) -> None:
    report = _validate(tmp_path, positive_class, [True] * 200)
    assert "every labelled row has the label 'true' (positive class 'false')" in _imbalance(report)


@pytest.mark.parametrize("positive_class", ["maybe", 2, "2"])
def test_a_positive_class_that_is_no_bool_is_a_class_no_row_has(tmp_path: Path, positive_class: Any) -> None:
    """Both classes are there, half and half: a positive class read as false (or true) found nothing wrong."""
    report = _validate(tmp_path, positive_class, [i % 2 == 0 for i in range(200)])
    message = _imbalance(report)
    assert f"the rarest label class '{positive_class}' is 0.000% of the rows" in message
    assert "false: 50.000%" in message
    assert "true: 50.000%" in message
