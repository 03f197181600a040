"""A batch whose labels the training job would refuse fails validation, naming the values to fix.

Validation counts a batch's label classes as training spells them (``shared.spec.label_class``): before, a binary
text label holding a third value passed validation and stopped the run's training job (exit 2), and a category
label declared ``["0", "1"]`` holding ``1.0`` was warned about as an unseen category that training read as class 1.
Each case here is checked on both sides: what validation says, and what training does with the same file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.spec import DataContract, Task
from shared.validation import Finding, ValidationReport, validate
from training_jobs.contract import parse_contract
from training_jobs.data import LabelSpace, infer_label_space, load_dataset
from training_jobs.errors import DataError


def _contract(label: dict[str, Any], positive: str | int = "yes") -> dict[str, Any]:
    return {
        "label": "answer",
        "positive_class": positive,
        "min_rows": 1,
        "min_label_share": 0.0,
        "columns": [
            {"name": "x", "type": "float", "nullable": True},
            {"name": "answer", "nullable": True, **label},
        ],
    }


def _csv(tmp_path: Path, labels: list[str]) -> Path:
    path = tmp_path / "batch.csv"
    path.write_text("x,answer\n" + "".join(f"{i},{v}\n" for i, v in enumerate(labels)), encoding="utf-8")
    return path


def _validated(path: Path, document: dict[str, Any], task: Task) -> ValidationReport:
    return validate(path, DataContract.model_validate(document), task=task)


def _trained_classes(path: Path, document: dict[str, Any], task: Task) -> LabelSpace:
    """The classes train.py would give this batch (or the DataError it stops on)."""
    contract = parse_contract(json.loads(json.dumps({**document, "task": task})))
    return infer_label_space(load_dataset(path, contract).frame, contract)


def _label_findings(report: ValidationReport) -> list[Finding]:
    return [f for f in report.findings if f.column == "answer" and f.check != "label_imbalance"]


def test_a_third_value_in_a_binary_text_label_fails_validation_as_training_would(tmp_path: Path) -> None:
    document = _contract({"type": "string"})
    path = _csv(tmp_path, ["no", "yes", "no", "maybe", "no", "maybe", "yes", "No"])
    report = _validated(path, document, "binary")
    [finding] = _label_findings(report)
    assert (finding.check, finding.severity, finding.count, report.ok) == ("label_class", "error", 3, False)
    assert "the task is binary but the label holds 4 classes" in finding.message
    assert "'yes' and 'no' (the most frequent other) it holds 'maybe'×2, 'No'×1" in finding.message
    assert [(e.row, e.value) for e in finding.examples] == [(3, "maybe"), (7, "No")]
    assert "set task: multiclass" in finding.remediation
    with pytest.raises(DataError, match=r"holds 4 values but the task is binary"):
        _trained_classes(path, document, "binary")
    # The same batch without the extra values passes both.
    clean = _csv(tmp_path, ["no", "yes", "no", "yes"])
    assert _validated(clean, document, "binary").ok
    assert _trained_classes(clean, document, "binary").classes == ("no", "yes")


def test_a_category_label_spelt_as_training_reads_it_is_not_an_unseen_category(tmp_path: Path) -> None:
    """ "1.0" and "01" are class 1 to training (its canonical spelling); validation warned about both as values
    outside the categories, and counted them apart from "1" in the class balance."""
    document = _contract({"type": "category", "categories": ["0", "1"]}, positive="1")
    path = _csv(tmp_path, ["0", "1", "1.0", "01", "0", "0"])
    report = _validated(path, document, "binary")
    assert _label_findings(report) == [], report.summary()
    assert report.ok
    assert _trained_classes(path, document, "binary").classes == ("0", "1")


def test_a_binary_category_label_holding_an_undeclared_value_is_refused_by_both(tmp_path: Path) -> None:
    """With "no" absent, training took "maybe" as the negative class of a label declared [no, yes] (two values,
    so the third-value check never ran) while validation only warned."""
    document = _contract({"type": "category", "categories": ["no", "yes"]})
    path = _csv(tmp_path, ["yes", "maybe", "maybe", "yes"])
    [finding] = _label_findings(_validated(path, document, "binary"))
    assert (finding.check, finding.severity, finding.count) == ("label_class", "error", 2)
    assert "outside its declared classes ['no', 'yes']: 'maybe'×2" in finding.message
    assert "categories of 'answer'" in finding.remediation
    with pytest.raises(DataError, match=r"outside its declared categories: \['maybe'\]"):
        _trained_classes(path, document, "binary")


def test_a_multiclass_label_value_outside_its_categories_fails_validation(tmp_path: Path) -> None:
    document = _contract({"type": "category", "categories": ["billing", "sales", "abuse"]}, positive=1)
    path = _csv(tmp_path, ["billing", "sales", "abuse", "Billing ", "billing"])
    report = _validated(path, document, "multiclass")
    [finding] = _label_findings(report)
    assert (finding.check, finding.count, report.ok) == ("label_class", 1, False)
    assert [(e.row, e.value) for e in finding.examples] == [(3, "Billing ")]
    with pytest.raises(DataError, match="outside its declared classes"):
        _trained_classes(path, document, "multiclass")


def test_a_multiclass_label_of_undeclared_classes_takes_whatever_it_holds(tmp_path: Path) -> None:
    document = _contract({"type": "string"}, positive=1)
    path = _csv(tmp_path, ["billing", "sales", "abuse", "billing"])
    assert _validated(path, document, "multiclass").ok
    assert _trained_classes(path, document, "multiclass").classes == ("abuse", "billing", "sales")


def test_a_parquet_dictionary_label_names_the_first_row_of_each_bad_value(tmp_path: Path) -> None:
    labels = ["no", "yes"] * 50_000 + ["maybe"] + ["no"] * 10 + ["perhaps"]
    table = pa.table({"x": np.arange(len(labels), dtype=np.float64), "answer": pa.array(labels).dictionary_encode()})
    path = tmp_path / "batch.parquet"
    pq.write_table(table, path, row_group_size=30_000)
    [finding] = _label_findings(
        _validated(path, _contract({"type": "category", "categories": ["no", "yes"]}), "binary")
    )
    assert [(e.row, e.value) for e in finding.examples] == [(100_000, "maybe"), (100_011, "perhaps")]


def test_a_binary_label_of_many_values_is_refused_without_counting_each(tmp_path: Path) -> None:
    """A float column named as a binary label (a regression target): every row is its own class. Validation stops
    tracking classes one by one past 1,000 and still refuses the batch, in bounded time."""
    values = np.random.default_rng(3).normal(size=200_000)
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.table({"x": values, "answer": values}), path)
    document = _contract({"type": "float"}, positive=1)
    report = _validated(path, document, "binary")
    [finding] = [f for f in report.findings if f.check == "label_class"]
    assert "the label holds more than 1,000 classes" in finding.message
    assert not report.ok
    assert any("more than 1000 distinct values" in note for note in report.notes)


def test_a_third_class_fails_a_binary_label_even_when_its_categories_declare_it(tmp_path: Path) -> None:
    """The spec may declare three categories for a binary label (a class some batches no longer hold); a batch
    holding all three still cannot train a binary model."""
    document = _contract({"type": "category", "categories": ["no", "yes", "maybe"]})
    path = _csv(tmp_path, ["no", "yes", "maybe", "yes", "no"])
    [finding] = _label_findings(_validated(path, document, "binary"))
    assert (finding.check, finding.severity, finding.count) == ("label_class", "error", 1)
    assert "the task is binary but the label holds 3 classes" in finding.message
    assert "'yes' and 'no' (the most frequent other) it holds 'maybe'×1" in finding.message
    with pytest.raises(DataError, match=r"holds 3 values but the task is binary"):
        _trained_classes(path, document, "binary")
    two = _csv(tmp_path, ["no", "yes", "no"])
    assert _validated(two, document, "binary").ok
    assert _trained_classes(two, document, "binary").classes == ("no", "yes")
