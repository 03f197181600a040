"""An infinity is a bad value, not a number: it fails the type check (named in the report) and never reaches a
profile, a drift distance or any JSON the app writes or serves (JSON has no Infinity or NaN)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from functions.http import json_response
from perennial_cli.main import app
from shared.drift import ColumnDrift, DriftReport, compare
from shared.spec import DataContract
from shared.validation import Finding, ValidationReport, validate
from tests.validation.conftest import write_csv_text

runner = CliRunner()

SPEC = """\
name: meter
task: binary
data:
  label: y
  positive_class: 1
  min_rows: 1
  max_missing_rate: 0.5
  columns:
    - {name: reading, type: float, nullable: true, min: 0}
    - {name: count, type: int, nullable: true, min: 0}
    - {name: y, type: int, nullable: false, min: 0, max: 1}
training:
  entry: training_jobs/train.py
  compute: cpu
rollout:
  endpoint: meter-ep
"""


def strict_json(text: str) -> Any:
    """Parse as a JSON parser outside Python would: Infinity, -Infinity and NaN are not JSON."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in JSON output")

    return json.loads(text, parse_constant=refuse)


def contract() -> DataContract:
    return DataContract.model_validate(
        {
            "label": "y",
            "min_rows": 1,
            "max_missing_rate": 0.5,
            "columns": [
                {"name": "reading", "type": "float", "nullable": True, "min": 0},
                {"name": "count", "type": "int", "nullable": True, "min": 0},
                {"name": "y", "type": "int", "nullable": False, "min": 0, "max": 1},
            ],
        }
    )


def only(report: ValidationReport, check: str, column: str) -> Finding:
    found = [f for f in report.findings if f.check == check and f.column == column]
    assert len(found) == 1, report.summary()
    return found[0]


def clean_rows(n: int) -> list[str]:
    return [f"{1.5 + i % 7},{i % 5},{i % 2}" for i in range(n)]


def test_infinities_in_a_csv_are_type_mismatches_named_by_their_text(tmp_path: Path) -> None:
    rows = clean_rows(40)
    rows[3], rows[9], rows[20] = "inf,1,0", "Infinity,2,1", "-inf,3,0"
    path = write_csv_text(tmp_path / "b.csv", "reading,count,y\n" + "\n".join(rows) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no numpy warning leaks from the profile
        report = validate(path, contract())
    assert not report.ok
    finding = only(report, "type_mismatch", "reading")
    assert finding.count == 3
    assert [(e.row, e.value.lower()) for e in finding.examples] == [(3, "inf"), (9, "inf"), (20, "-inf")]
    assert [e.line for e in finding.examples] == [5, 11, 22]
    assert not [f for f in report.findings if f.check == "out_of_range"], "-inf is bad, not below the minimum"
    numeric = report.profile.columns["reading"].numeric if report.profile else None
    assert numeric is not None
    assert numeric.count == 37
    assert math.isfinite(numeric.mean)
    assert math.isfinite(numeric.max)


def test_an_infinity_beside_a_value_that_does_not_parse_is_bad_too(tmp_path: Path) -> None:
    # The block is re-read as text (for "abc"), and then cast value by value.
    rows = clean_rows(10)
    rows[2], rows[6] = "abc,1,0", "+Infinity,2,1"
    path = write_csv_text(tmp_path / "b.csv", "reading,count,y\n" + "\n".join(rows) + "\n")
    finding = only(validate(path, contract()), "type_mismatch", "reading")
    assert [(e.row, e.value) for e in finding.examples] == [(2, "abc"), (6, "+Infinity")]


def test_parquet_infinities_are_bad_and_nan_stays_missing(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "reading": [1.0, np.inf, np.nan, 2.0, -np.inf, 3.0],
            "count": [1.0, 2.0, np.inf, 3.0, 4.0, np.nan],  # an int column pandas wrote as float (a gap)
            "y": [0, 1, 0, 1, 0, 1],
        }
    )
    frame.to_parquet(tmp_path / "b.parquet", index=False)
    report = validate(tmp_path / "b.parquet", contract())
    reading = only(report, "type_mismatch", "reading")
    assert [(e.row, e.value) for e in reading.examples] == [(1, "inf"), (4, "-inf")]
    assert only(report, "type_mismatch", "count").count == 1
    profile = report.profile
    assert profile is not None
    assert profile.columns["reading"].nulls == 1 + 2  # NaN is missing; the bad values count as missing too
    numeric = profile.columns["reading"].numeric
    assert numeric is not None
    assert (numeric.min, numeric.max) == (1.0, 3.0)


def test_the_cli_fails_the_batch_and_still_writes_a_json_profile_and_drift(tmp_path: Path) -> None:
    spec = tmp_path / "meter.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    reference = write_csv_text(tmp_path / "ref.csv", "reading,count,y\n" + "\n".join(clean_rows(200)) + "\n")
    profile = tmp_path / "ref.json"
    result = runner.invoke(app, ["validate", str(reference), "--spec", str(spec), "--profile-out", str(profile)])
    assert result.exit_code == 0, result.output

    rows = clean_rows(200)
    rows[5] = "Infinity,1,0"
    batch = write_csv_text(tmp_path / "new.csv", "reading,count,y\n" + "\n".join(rows) + "\n")
    out = tmp_path / "new.json"
    args = ["validate", str(batch), "--spec", str(spec), "--profile-out", str(out), "--reference", str(profile)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    document = strict_json(result.output)
    [finding] = [f for f in document["validation"]["findings"] if f["check"] == "type_mismatch"]
    assert finding["examples"][0]["value"] == "inf"
    [drift] = [c for c in document["drift"]["columns"] if c["column"] == "reading"]
    assert drift["wasserstein"] is not None
    assert math.isfinite(drift["wasserstein"])
    assert strict_json(out.read_text())["rows"] == 200


def test_no_report_or_api_answer_spells_a_non_finite_number() -> None:
    # A last defence for what the cast should already keep out (a record stored by an older version, say).
    column = ColumnDrift("reading", "numeric", True, "distance", ["Wasserstein inf"], 10, 10, psi=math.nan)
    column.wasserstein = math.inf
    report = DriftReport([column], 1.0, True, {"drifted_share": 0.5})
    assert strict_json(report.to_json())["columns"][0]["wasserstein"] is None
    assert strict_json(json.dumps(report.to_dict()))["columns"][0]["psi"] is None

    answer = json_response({"run": {"drift": report.columns and {"wasserstein": math.inf, "ks": [-math.inf, 1.0]}}})
    assert strict_json(answer.get_body().decode()) == {"run": {"drift": {"wasserstein": None, "ks": [None, 1.0]}}}


def test_a_profile_with_a_non_finite_moment_still_writes_json(tmp_path: Path) -> None:
    profile = validate(write_csv_text(tmp_path / "r.csv", "reading,count,y\n" + "\n".join(clean_rows(20))), contract())
    assert profile.profile is not None
    numeric = profile.profile.columns["reading"].numeric
    assert numeric is not None
    numeric.mean = math.inf
    assert strict_json(profile.profile.to_json())["columns"]["reading"]["numeric"]["mean"] is None


@pytest.mark.parametrize("text", ["inf", "-inf", "Infinity", "1e999"])
def test_drift_against_a_batch_with_an_infinity_stays_finite(tmp_path: Path, text: str) -> None:
    reference = validate(
        write_csv_text(tmp_path / "r.csv", "reading,count,y\n" + "\n".join(clean_rows(300))), contract()
    )
    rows = clean_rows(300)
    rows[0] = f"{text},1,0"
    current = validate(write_csv_text(tmp_path / "c.csv", "reading,count,y\n" + "\n".join(rows)), contract())
    assert current.profile is not None
    assert reference.profile is not None
    drift = compare(reference.profile, current.profile, columns=["reading"])
    [column] = drift.columns
    assert column.wasserstein is not None
    assert math.isfinite(column.wasserstein)
