"""Which CSV text is a missing value: in a string or category column only the empty field ("NA" is the region
code NA, as it is in Parquet and at scoring); in a number, bool or timestamp column also the usual tokens (NA,
N/A, null, NULL, NaN, None, …), which cannot be values there."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from perennial_cli.main import app
from shared.spec import DataContract
from shared.validation import ValidationReport, validate
from tests.validation.conftest import write_csv_text

runner = CliRunner()
TOKENS = ["NA", "N/A", "null", "NULL", "NaN", "None", "n/a", "#N/A", "<NA>", "nan"]

SPEC = """\
name: bank
task: binary
data:
  label: y
  positive_class: 1
  min_rows: 1
  max_missing_rate: 0.9
  columns:
    - {name: region, type: category, nullable: false, categories: [NA, EU, APAC]}
    - {name: code, type: string, nullable: false}
    - {name: y, type: int, nullable: false, min: 0, max: 1}
training:
  entry: training_jobs/train.py
  compute: cpu
rollout:
  endpoint: bank-ep
"""


def contract() -> DataContract:
    return DataContract.model_validate(
        {
            "label": "y",
            "min_rows": 1,
            "max_missing_rate": 1.0,
            "columns": [
                {"name": "region", "type": "category", "nullable": False, "categories": ["NA", "EU", "APAC"]},
                {"name": "code", "type": "string", "nullable": True},
                {"name": "amount", "type": "float", "nullable": True},
                {"name": "n", "type": "int", "nullable": True},
                {"name": "flag", "type": "bool", "nullable": True},
                {"name": "ts", "type": "timestamp", "nullable": True},
                {"name": "y", "type": "int", "nullable": False, "min": 0, "max": 1},
            ],
        }
    )


def tokens_csv(path: Path, bad_amount: str | None = None) -> Path:
    """One row per token, in every column; then a row with empty fields."""
    lines = ["region,code,amount,n,flag,ts,y"]
    lines += [f"NA,{t},{t},{t},{t},{t},{i % 2}" for i, t in enumerate(TOKENS)]
    lines += ["EU,,,,,,0", "APAC,x1,2.5,3,true,2024-01-02T03:04:05,1"]
    if bad_amount is not None:
        lines.append(f"EU,x2,{bad_amount},4,false,2024-01-03,0")
    return write_csv_text(path, "\n".join(lines) + "\n")


def counts(report: ValidationReport, column: str) -> dict[str, int]:
    assert report.profile is not None
    categorical = report.profile.columns[column].categorical
    assert categorical is not None
    return categorical.counts


def nulls(report: ValidationReport, column: str) -> int:
    assert report.profile is not None
    return report.profile.columns[column].nulls


@pytest.mark.parametrize("bad_amount", [None, "abc"], ids=["typed", "re-read-as-text"])
def test_a_text_column_reads_only_the_empty_field_as_missing(tmp_path: Path, bad_amount: str | None) -> None:
    # "abc" makes the reader re-read the block as text and cast each column itself: the same answer.
    report = validate(tokens_csv(tmp_path / "b.csv", bad_amount), contract())
    findings = {(f.check, f.column) for f in report.findings}
    assert findings == (set() if bad_amount is None else {("type_mismatch", "amount")}), report.summary()
    assert counts(report, "region")["NA"] == len(TOKENS)  # the category NA, not a missing value
    assert nulls(report, "region") == 0
    assert nulls(report, "code") == 1  # only the empty field
    assert {t: counts(report, "code").get(t) for t in TOKENS} == dict.fromkeys(TOKENS, 1)
    for column in ("amount", "n", "flag", "ts"):  # tokens and the empty field: missing, not bad
        assert nulls(report, column) == len(TOKENS) + 1 + (column == "amount" and bad_amount is not None), column


def test_a_region_code_na_is_the_same_category_in_csv_and_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame({"region": ["NA", "EU", "NA", "APAC"], "code": ["null", "b", "None", "d"], "y": [0, 1, 0, 1]})
    frame.to_csv(tmp_path / "b.csv", index=False)
    frame.to_parquet(tmp_path / "b.parquet", index=False)
    spec = tmp_path / "bank.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    for name in ("b.csv", "b.parquet"):
        result = runner.invoke(app, ["validate", str(tmp_path / name), "--spec", str(spec)])
        assert result.exit_code == 0, result.output
        assert "null_in_required" not in result.output
        report = validate(tmp_path / name, contract())
        assert counts(report, "region") == {"NA": 2, "EU": 1, "APAC": 1}, name
        assert counts(report, "code") == {"null": 1, "b": 1, "None": 1, "d": 1}, name


def test_an_empty_category_is_still_missing_in_a_required_column(tmp_path: Path) -> None:
    path = write_csv_text(tmp_path / "b.csv", 'region,code,y\nNA,a,0\n,b,1\n"",c,0\nEU,d,1\n')
    report = validate(path, contract())
    [finding] = [f for f in report.findings if f.check == "null_in_required"]
    assert (finding.column, finding.count, [e.line for e in finding.examples]) == ("region", 2, [3, 4])
    assert counts(report, "region") == {"NA": 1, "EU": 1}


def test_bool_and_timestamp_tokens_are_missing_also_when_stored_as_parquet_text(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "region": ["EU"] * 4,
            "flag": ["true", "NA", "false", "maybe"],
            "ts": ["2024-01-01", "null", "2024-01-02", "soon"],
            "y": [0, 1, 0, 1],
        }
    )
    frame.to_parquet(tmp_path / "b.parquet", index=False)
    report = validate(tmp_path / "b.parquet", contract())
    bad = {f.column: [e.value for e in f.examples] for f in report.findings if f.check == "type_mismatch"}
    assert bad == {"flag": ["maybe"], "ts": ["soon"]}
    assert (nulls(report, "flag"), nulls(report, "ts")) == (2, 2)  # the token, and the bad value


def test_numbers_in_a_parquet_timestamp_column_are_bad_values_not_microseconds(tmp_path: Path) -> None:
    """Arrow would read an int64 1700000000 as microseconds since 1970 (a date in January 1970); epoch numbers have
    no unit to trust, so they are a type_mismatch naming the value, as epoch seconds in a CSV are."""
    frame = pd.DataFrame({"region": ["EU"] * 3, "ts": [1700000000, 1700000060, None], "y": [0, 1, 0]})
    frame["ts"] = frame["ts"].astype("Int64")
    frame.to_parquet(tmp_path / "b.parquet", index=False)
    report = validate(tmp_path / "b.parquet", contract())
    [finding] = [f for f in report.findings if f.check == "type_mismatch"]
    assert (finding.column, finding.count) == ("ts", 2)
    assert [e.value for e in finding.examples] == ["1700000000", "1700000060"]
    assert "timestamp" in finding.message
    assert nulls(report, "ts") == 3  # two bad values and the missing one, none as a 1970 date


def test_a_float_nan_in_a_parquet_category_column_is_missing_not_the_text_nan(tmp_path: Path) -> None:
    """pandas writes a gap in a numeric code column as NaN; training reads it as missing, and so does validation
    now (it was the category "nan", an unseen value, and a required column's gap went unnoticed)."""
    nan = pa.array([1.0, float("nan"), 2.0], pa.float64(), from_pandas=False)  # a real NaN, not a null
    pq.write_table(pa.table({"region": nan, "y": pa.array([0, 1, 0])}), tmp_path / "b.parquet")
    report = validate(tmp_path / "b.parquet", contract())
    assert nulls(report, "region") == 1
    assert "nan" not in counts(report, "region")
    [required] = [f for f in report.findings if f.check == "null_in_required"]
    assert (required.column, required.count) == ("region", 1)
