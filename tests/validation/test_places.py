"""Where a finding's examples are: the CSV line a person sees (the header is line 1), with the
0-based data row kept in the report's JSON as before; Parquet has no lines, so its rows say 0-based."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from perennial_cli.main import app
from perennial_cli.synthetic import fraud_batch, write_csv
from shared.validation import Example, Finding, ValidationReport, locate, validate
from tests.validation.conftest import REPO, good_rows, rows_to_csv, small_contract, write_csv_text

SPEC = str(REPO / "models" / "fraud.yaml")


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` holding ``text``, as an editor numbers it."""
    [number] = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    return number


def test_a_csv_finding_gives_the_line_an_editor_shows_and_keeps_the_0_based_row(tmp_path: Path) -> None:
    rows = good_rows(10)
    rows[5]["x"] = -3.0
    path = rows_to_csv(tmp_path / "r.csv", rows)
    report = validate(path, small_contract())
    [finding] = report.findings
    [example] = finding.examples
    assert example.line == line_of(path, "-3") == 7
    assert example.row == 5  # the JSON field keeps its meaning: data rows counted from 0
    assert "(line 7)" in report.summary()
    document = json.loads(report.to_json())
    assert document["findings"][0]["examples"] == [{"row": 5, "value": "-3.0", "line": 7}]


def test_parquet_rows_are_labelled_0_based(tmp_path: Path) -> None:
    rows = good_rows(10)
    rows[5]["x"] = -3.0
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.parquet")
    report = validate(tmp_path / "r.parquet", small_contract())
    [example] = report.findings[0].examples
    assert (example.row, example.line) == (5, None)
    assert "(0-based row 5)" in report.summary()


def test_lines_after_skipped_malformed_rows_are_still_the_file_lines(tmp_path: Path) -> None:
    lines = ["id,x,n,c,b,ts,y"] + [f"r{i},{i},{i % 10},a,true,,{i % 2}" for i in range(30)]
    lines[1 + 3] = "r3,1,2"  # too few fields: skipped
    lines[1 + 12] = "r12,1,2,a,true,,1,EXTRA"  # too many: skipped
    lines[1 + 20] = "r20,-1,2,a,true,,1"  # out of range, after both
    lines[1 + 2] = "r2,-2,2,a,true,,1"  # out of range, before both
    path = write_csv_text(tmp_path / "ragged.csv", "\n".join(lines) + "\n")
    report = validate(path, small_contract())
    by_check = {f.check: f for f in report.findings}
    assert [e.line for e in by_check["malformed_rows"].examples] == [line_of(path, "r3,"), line_of(path, "r12,")]
    below = by_check["out_of_range"].examples
    assert [e.line for e in below] == [line_of(path, "r2,"), line_of(path, "r20,")] == [4, 22]
    assert [e.row for e in below] == [2, 18]  # well-formed data rows from 0, as before
    assert report.notes == []


def test_rows_that_cannot_be_placed_say_so(tmp_path: Path) -> None:
    lines = ["id,x,n,c,b,ts,y"] + [f"r{i},{i},{i % 10},a,true,,{i % 2}" for i in range(30)]
    for i in range(7):  # more malformed rows than the report keeps examples of
        lines[1 + i] = f"r{i},1"
    lines[1 + 25] = "r25,-1,2,a,true,,1"
    report = validate(write_csv_text(tmp_path / "ragged.csv", "\n".join(lines) + "\n"), small_contract())
    [below] = [f for f in report.findings if f.check == "out_of_range"]
    assert [(e.row, e.line) for e in below.examples] == [(18, None)]
    assert "(0-based row 18)" in report.summary()
    assert any("cannot all be placed" in note for note in report.notes), report.notes


def test_locate_names_the_unit_and_the_values() -> None:
    assert locate([Example(5, "-3.0", 7), Example(9, "x", 11)], values=True) == "lines 7='-3.0', 11='x'"
    assert locate([Example(5, "")]) == "0-based row 5"
    assert locate([Example(5, "a"), Example(8, "b")], values=True) == "0-based rows 5='a', 8='b'"
    assert locate([Example(None, "?")]) == ""


def test_reports_stored_before_lines_existed_still_load() -> None:
    finding = Finding("out_of_range", "error", "m", "r", column="x", count=1, examples=[Example(5, "-3.0", 7)])
    report = ValidationReport("s", "csv", 10, 100, ["x"], [finding], None, 0.1)
    document = report.to_dict()
    old = json.loads(json.dumps(document))
    del old["findings"][0]["examples"][0]["line"]
    assert ValidationReport.from_dict(old).findings[0].examples == [Example(5, "-3.0")]
    newer = json.loads(json.dumps(document))
    newer["findings"][0]["examples"][0]["column_offset"] = 3  # a field a later version may add
    newer["findings"][0]["hint_url"] = "https://example.invalid"
    assert ValidationReport.from_dict(newer).findings == [finding]


def test_cli_shows_the_csv_line(tmp_path: Path) -> None:
    frame = fraud_batch(3000, seed=1)
    frame.loc[5, "amount"] = -3.0
    path = write_csv(frame, tmp_path / "neg.csv")
    result = CliRunner().invoke(app, ["validate", str(path), "--spec", SPEC], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert line_of(path, ",-3.0,") == 7
    assert "(line 7='-3.0')" in result.output
    assert "rows 5" not in result.output
    result = CliRunner().invoke(app, ["validate", str(path), "--spec", SPEC, "--json"])
    [example] = json.loads(result.output)["validation"]["findings"][0]["examples"]
    assert example == {"row": 5, "value": "-3.0", "line": 7}
