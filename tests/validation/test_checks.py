"""Each data-contract check on crafted data: it fires, says where, and says what to do."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.spec import DataContract
from shared.validation import Finding, ValidationReport, validate
from tests.validation.conftest import good_rows, rows_to_csv, small_contract, write_csv_text


def only(report: ValidationReport, check: str) -> Finding:
    found = [f for f in report.findings if f.check == check]
    assert len(found) == 1, report.summary()
    return found[0]


def checks(report: ValidationReport) -> set[str]:
    return {f.check for f in report.findings}


def test_clean_batch_passes_with_profile(tmp_path: Path) -> None:
    report = validate(rows_to_csv(tmp_path / "ok.csv", good_rows(50)), small_contract())
    assert report.ok, report.summary()
    assert report.findings == []
    assert report.rows == 50
    assert report.bytes_read == (tmp_path / "ok.csv").stat().st_size
    assert report.profile is not None
    assert report.profile.columns["x"].numeric is not None
    assert report.profile.columns["x"].numeric.mean == pytest.approx(24.5)
    assert report.profile.columns["c"].categorical is not None
    assert report.profile.columns["c"].categorical.counts == {"a": 25, "b": 25}
    assert "PASSED" in report.summary()


def test_missing_column_and_missing_label(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k not in ("n", "y")} for r in good_rows()]
    report = validate(rows_to_csv(tmp_path / "m.csv", rows), small_contract())
    assert not report.ok
    missing = only(report, "missing_column")
    assert missing.column == "n"
    assert missing.severity == "error"
    assert report.notes == ["the file's columns: id, x, c, b, ts"]  # once, not on every missing column
    label = only(report, "missing_label")
    assert label.column == "y"
    assert label.severity == "error"


def test_a_header_that_nearly_names_a_missing_column_says_which_to_rename(tmp_path: Path) -> None:
    """Names match exactly: an export's `X` or ` n ` is not x or n, and the fix names the near miss."""
    renamed = {"x": "X", "n": " n ", "y": "Y"}
    rows = [{renamed.get(k, k): v for k, v in r.items()} for r in good_rows()]
    report = validate(rows_to_csv(tmp_path / "near.csv", rows), small_contract())
    fixes = {f.column: f.remediation for f in report.findings if f.check in ("missing_column", "missing_label")}
    assert fixes["x"] == "the file has 'X', which differs only in case or spaces: rename it 'x' (names match exactly)"
    assert fixes["n"].startswith("the file has ' n ', which differs only in case or spaces")
    assert fixes["y"].startswith("the file has 'Y'")


def test_type_mismatch_names_the_value_and_row(tmp_path: Path) -> None:
    rows = good_rows(20)
    rows[7]["x"] = "12,5"  # a decimal comma from a European export
    rows[11]["x"] = "abc"
    table = pa.Table.from_pylist([{**r, "x": str(r["x"])} for r in rows])
    report = validate(table, small_contract())
    finding = only(report, "type_mismatch")
    assert finding.column == "x"
    assert finding.count == 2
    assert [(e.row, e.value) for e in finding.examples] == [(7, "12,5"), (11, "abc")]
    assert "float" in finding.message
    # The bad values are not also reported as nulls in a non-nullable column.
    assert "null_in_required" not in checks(report)


def test_integral_floats_are_accepted_in_int_columns(tmp_path: Path) -> None:
    # pandas writes an int column with a gap as 3.0, 4.0, … — that is not a type error.
    text = "id,x,n,c,b,ts,y\nr1,1.5,3.0,a,true,,1\nr2,2.5,,b,false,,0\n"
    report = validate(write_csv_text(tmp_path / "f.csv", text), small_contract(max_missing_rate=1.0))
    assert report.ok, report.summary()
    three = report.profile.columns["n"].numeric if report.profile else None
    assert three is not None
    assert three.count == 1
    assert three.mean == 3.0


def test_nulls_in_required_column_and_missing_rate(tmp_path: Path) -> None:
    rows = good_rows(10)
    rows[2]["x"] = None
    rows[5]["x"] = None
    for r in rows[:6]:
        r["n"] = None  # nullable, but 60% missing > max_missing_rate 0.5
    report = validate(rows_to_csv(tmp_path / "n.csv", rows), small_contract())
    nulls = only(report, "null_in_required")
    assert nulls.column == "x"
    assert nulls.count == 2
    assert [e.row for e in nulls.examples] == [2, 5]
    rate = only(report, "missing_rate")
    assert rate.column == "n"
    assert rate.count == 6
    assert "60.00%" in rate.message


def test_nan_counts_as_missing_in_float_columns() -> None:
    table = pa.Table.from_pylist(good_rows(4))
    x = pa.array([1.0, float("nan"), 2.0, 3.0])
    report = validate(table.set_column(1, "x", x), small_contract())
    assert only(report, "null_in_required").examples[0].row == 1


def test_out_of_range_both_sides(tmp_path: Path) -> None:
    rows = good_rows(10)
    rows[1]["x"] = -1.0
    rows[3]["x"] = 100.5
    rows[4]["x"] = 1e9
    report = validate(rows_to_csv(tmp_path / "r.csv", rows), small_contract())
    found = sorted((f.message, f.count, [e.row for e in f.examples]) for f in report.findings)
    assert found == [
        ("1 value(s) below min=0", 1, [1]),
        ("2 value(s) above max=100", 2, [3, 4]),
    ]
    assert all(f.severity == "error" for f in report.findings)


def test_unseen_categories_listed_with_counts(tmp_path: Path) -> None:
    rows = good_rows(10)
    for i in (2, 4, 6):
        rows[i]["c"] = "z"
    rows[8]["c"] = "q"
    report = validate(rows_to_csv(tmp_path / "c.csv", rows), small_contract())
    finding = only(report, "unseen_category")
    assert finding.severity == "warning"  # the default policy
    assert finding.count == 4
    assert "'z'×3" in finding.message
    assert "'q'×1" in finding.message
    assert [e.row for e in finding.examples] == [2, 4, 6, 8]
    assert report.ok  # warnings do not fail a batch


def test_severity_policy_turns_a_warning_into_an_error(tmp_path: Path) -> None:
    rows = good_rows(10)
    rows[0]["c"] = "z"
    contract = small_contract(severity={"unseen_category": "error"})
    report = validate(rows_to_csv(tmp_path / "c.csv", rows), contract)
    assert only(report, "unseen_category").severity == "error"
    assert not report.ok


def test_too_few_rows(tmp_path: Path) -> None:
    report = validate(rows_to_csv(tmp_path / "few.csv", good_rows(3)), small_contract(min_rows=1000))
    finding = only(report, "too_few_rows")
    assert finding.count == 3
    assert "min_rows=1,000" in finding.message


def test_header_only_file_has_zero_rows(tmp_path: Path) -> None:
    report = validate(write_csv_text(tmp_path / "h.csv", "id,x,n,c,b,ts,y\n"), small_contract())
    assert report.rows == 0
    assert "too_few_rows" in checks(report)
    assert not report.ok


def test_duplicate_keys_across_batches() -> None:
    rows = good_rows(200_000 // 1000 * 1000)
    rows[150_000]["id"] = "r5"  # a repeat of an early row, in a later record batch
    rows[9]["id"] = "r8"  # a repeat inside the first batch
    report = validate(pa.Table.from_pylist(rows), small_contract())
    finding = only(report, "duplicate_key")
    assert finding.count == 2
    assert [(e.row, e.value) for e in finding.examples] == [(9, "r8"), (150_000, "r5")]


def test_label_imbalance_and_missing_positive_class(tmp_path: Path) -> None:
    rows = good_rows(1000)
    for i, r in enumerate(rows):
        r["y"] = 1 if i == 0 else 0
    report = validate(rows_to_csv(tmp_path / "l.csv", rows), small_contract(min_label_share=0.01))
    finding = only(report, "label_imbalance")
    assert "'1' is 0.100%" in finding.message
    for r in rows:
        r["y"] = 0
    report = validate(rows_to_csv(tmp_path / "l0.csv", rows), small_contract())
    assert "every labelled row has the label '0'" in only(report, "label_imbalance").message


def _ticket_contract() -> DataContract:
    """A multiclass label: four declared queues (positive_class keeps its default, 1, which no queue is)."""
    contract = small_contract(min_label_share=0.01)
    columns = [c.model_dump() for c in contract.columns if c.name != "y"]
    queue = {
        "name": "y",
        "type": "category",
        "nullable": False,
        "categories": ["billing", "technical", "sales", "abuse"],
    }
    return small_contract(min_label_share=0.01, columns=[*columns, queue])


def test_a_multiclass_label_is_not_asked_for_a_positive_class(tmp_path: Path) -> None:
    """Every multiclass batch was told its rarest class, '1', was 0% of the rows (the binary positive class): with
    label_imbalance an error, every batch failed."""
    rows = [{**r, "y": ["billing", "technical", "sales", "abuse"][i % 4]} for i, r in enumerate(good_rows(400))]
    report = validate(rows_to_csv(tmp_path / "q.csv", rows), _ticket_contract(), task="multiclass")
    assert "label_imbalance" not in checks(report), report.summary()
    assert report.ok


def test_a_declared_class_missing_from_a_multiclass_batch_is_reported(tmp_path: Path) -> None:
    rows = [{**r, "y": ["billing", "technical", "sales"][i % 3]} for i, r in enumerate(good_rows(300))]
    report = validate(rows_to_csv(tmp_path / "q.csv", rows), _ticket_contract(), task="multiclass")
    finding = only(report, "label_imbalance")
    assert "the rarest label class 'abuse' is 0.000% of the rows" in finding.message
    assert "positive class" not in finding.message


def test_a_class_missing_from_an_integer_multiclass_label_is_reported(tmp_path: Path) -> None:
    """Queues coded 0-3 by min and max declare four classes, as the training job reads them."""
    contract = small_contract(min_label_share=0.01)
    columns = [c.model_dump() for c in contract.columns if c.name != "y"]
    queue = {"name": "y", "type": "int", "nullable": False, "min": 0, "max": 3}
    rows = [{**r, "y": i % 3} for i, r in enumerate(good_rows(300))]
    queues = small_contract(min_label_share=0.01, columns=[*columns, queue])
    report = validate(rows_to_csv(tmp_path / "q.csv", rows), queues, task="multiclass")
    assert "the rarest label class '3' is 0.000% of the rows" in only(report, "label_imbalance").message


def test_extra_columns_are_a_warning(tmp_path: Path) -> None:
    rows = [{**r, "debug": 1} for r in good_rows()]
    report = validate(rows_to_csv(tmp_path / "e.csv", rows), small_contract())
    assert only(report, "extra_column").severity == "warning"
    assert report.ok


def test_parquet_with_wrong_physical_type(tmp_path: Path) -> None:
    rows = good_rows(10)
    table = pa.Table.from_pylist(rows).set_column(2, "n", pa.array([0.5 * i for i in range(10)]))
    pq.write_table(table, tmp_path / "t.parquet")
    report = validate(tmp_path / "t.parquet", small_contract())
    finding = only(report, "type_mismatch")
    assert finding.column == "n"
    assert finding.count == 5  # 0.5, 1.5, … are not whole numbers; 0.0, 1.0, … are
    assert finding.examples[0].row == 1
    assert finding.examples[0].value == "0.5"


def test_report_json_round_trip(tmp_path: Path) -> None:
    rows = good_rows(10)
    rows[1]["x"] = -5.0
    report = validate(rows_to_csv(tmp_path / "j.csv", rows), small_contract())
    again = ValidationReport.from_json(report.to_json())
    assert again.findings == report.findings
    assert again.ok is report.ok is False
    assert again.profile is not None
    assert again.profile.rows == 10
    assert '"profile":null' in report.to_json(include_profile=False)
