"""A CSV in another dialect (``;``, tab or ``|`` between values): its rows are still counted, and
one finding says what the file is and what to do, instead of one hint per missing column."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from perennial_cli.main import app
from perennial_cli.synthetic import fraud_batch
from shared.spec import ModelSpec
from shared.validation import ValidationReport, validate
from tests.validation.conftest import REPO, good_rows, rows_to_csv, small_contract, write_csv_text

SPEC = str(REPO / "models" / "fraud.yaml")


def checks(report: ValidationReport) -> list[str]:
    return [f.check for f in report.findings]


def test_a_semicolon_file_with_decimal_commas_is_the_same_one_finding(tmp_path: Path, fraud_spec: ModelSpec) -> None:
    """What a European Excel export really is: ';' between values and ',' in the numbers, so read as comma CSV
    most rows split into several fields."""
    path = tmp_path / "excel.csv"
    fraud_batch(3000, seed=1).to_csv(path, sep=";", decimal=",", index=False)
    report = validate(path, fraud_spec.data)

    assert report.rows == 3000
    assert "wrong_delimiter" in checks(report)
    assert "malformed_rows" not in checks(report), "a symptom of the delimiter, not a second problem"
    assert "too_few_rows" not in checks(report)


def test_a_semicolon_file_counts_its_rows_and_says_once_that_it_is_semicolon_delimited(
    tmp_path: Path, fraud_spec: ModelSpec
) -> None:
    path = tmp_path / "excel.csv"
    fraud_batch(3000, seed=1).to_csv(path, sep=";", index=False)  # a European Excel export
    report = validate(path, fraud_spec.data)

    assert report.rows == 3000  # the rows are there, even though no contract column was found
    assert "too_few_rows" not in checks(report)
    [dialect] = [f for f in report.findings if f.check == "wrong_delimiter"]
    assert dialect.severity == "error"
    assert "semicolon-delimited" in dialect.message
    assert "11 of them contract columns" in dialect.message
    assert "comma-separated" in dialect.remediation
    assert "Parquet" in dialect.remediation
    assert "extra_column" not in checks(report)  # the one "column" is the header itself: no second finding
    # The per-column findings stay, with a short pointer instead of the whole header on each.
    assert checks(report).count("missing_column") == 10
    assert checks(report).count("missing_label") == 1
    header = report.columns[0]
    assert all(header not in f.remediation for f in report.findings)
    assert sum(header[:60] in f.message for f in report.findings) == 1
    assert all("wrong_delimiter" in f.remediation for f in report.findings if f.check.startswith("missing_"))


@pytest.mark.parametrize(("delimiter", "name"), [("\t", "tab"), ("|", "pipe"), (";", "semicolon")])
def test_each_other_dialect_is_named(tmp_path: Path, delimiter: str, name: str) -> None:
    rows = good_rows(20)
    lines = [delimiter.join(rows[0])] + [delimiter.join(str(v) for v in row.values()) for row in rows]
    report = validate(write_csv_text(tmp_path / "d.csv", "\n".join(lines) + "\n"), small_contract())
    assert report.rows == 20
    [dialect] = [f for f in report.findings if f.check == "wrong_delimiter"]
    assert f"{name}-delimited" in dialect.message
    assert "7 names, 7 of them contract columns" in dialect.message


def test_a_file_without_any_contract_column_still_counts_its_rows(tmp_path: Path) -> None:
    rows = [{"other": i, "thing": "x"} for i in range(25)]
    report = validate(rows_to_csv(tmp_path / "other.csv", rows), small_contract(min_rows=10))
    assert report.rows == 25
    assert "too_few_rows" not in checks(report)
    assert "wrong_delimiter" not in checks(report)
    assert report.notes == ["the file's columns: other, thing"]
    assert all("other, thing" not in f.remediation for f in report.findings)


def test_delimiter_like_characters_elsewhere_are_not_a_dialect_problem(tmp_path: Path) -> None:
    # Several comma-separated columns: the file is comma-separated, whatever the names hold.
    report = validate(write_csv_text(tmp_path / "a.csv", "id,a;b\nr1,1\n"), small_contract())
    assert "wrong_delimiter" not in checks(report)
    # A one-column contract whose column is the file's one column.
    contract = small_contract(key=None, columns=[{"name": "y", "type": "int"}])
    report = validate(write_csv_text(tmp_path / "b.csv", "y\n0\n1\n"), contract)
    assert checks(report) == [], report.summary()
    # Parquet has no delimiter: a column name holding ';' is just a name.
    pq.write_table(pa.table({"a;b": [1, 2]}), tmp_path / "c.parquet")
    report = validate(tmp_path / "c.parquet", small_contract())
    assert "wrong_delimiter" not in checks(report)
    assert report.rows == 2


def test_cli_gives_one_delimiter_finding_and_one_fix_line_per_kind(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    fraud_batch(3000, seed=1).to_csv(path, sep=";", index=False)
    result = CliRunner().invoke(app, ["validate", str(path), "--spec", SPEC], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "csv, 3,000 rows" in out
    assert out.count("semicolon-delimited") == 1
    fixes = [line for line in result.output.splitlines() if line.startswith("fix ")]
    assert [line.split()[1].rstrip(":") for line in fixes] == ["wrong_delimiter", "missing_column", "missing_label"]
    assert fixes[1].startswith("fix missing_column transaction_id, amount, hour, ")
    assert "transaction_id;amount" not in result.output.split("fix ", 1)[1]  # the header is not repeated
