"""Numbers are ASCII decimal text: "0x17", "1_000" and "٣" are bad values to validation, as they are missing to
training (pandas); before, validation read them as 23, 1000 and 3 and passed a batch whose cells then trained as
missing, in columns declared nullable: false."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.spec import DataContract
from shared.validation import validate
from tests.validation.conftest import small_contract, write_csv_text
from training_jobs.contract import parse_contract
from training_jobs.data import load_dataset
from training_jobs.preprocessing import as_float

ODD = ["0x17", "0X1f", "1_000", "٣", "１", "2_5.5"]


def contract() -> DataContract:
    return small_contract(
        key=None,
        max_missing_rate=1.0,
        columns=[
            {"name": "n", "type": "int", "nullable": True},
            {"name": "x", "type": "float", "nullable": True},
            {"name": "y", "type": "int", "nullable": False, "min": 0, "max": 1},
        ],
    )


def _bad(path: Path) -> dict[str, int]:
    """Each column's count of type_mismatch values."""
    findings = validate(path, contract()).findings
    return {f.column or "": f.count or 0 for f in findings if f.check == "type_mismatch"}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_numbers_spelt_otherwise_are_bad_values_and_missing_to_training(tmp_path: Path, fmt: str) -> None:
    rows = [(text, text, i % 2) for i, text in enumerate(ODD)] + [("7", "2.5", 0)]
    if fmt == "csv":
        path = write_csv_text(tmp_path / "b.csv", "n,x,y\n" + "".join(f"{n},{x},{y}\n" for n, x, y in rows))
    else:  # text columns in Parquet: the same cast
        path = tmp_path / "b.parquet"
        pd.DataFrame(rows, columns=["n", "x", "y"]).astype({"n": str, "x": str}).to_parquet(path, index=False)
    assert _bad(path) == {"n": len(ODD), "x": len(ODD)}
    frame = load_dataset(path, parse_contract(contract().model_dump(mode="json"))).frame
    # What training makes of the same cells: missing, as validation now counts them; the plain row is 7 and 2.5.
    assert np.isnan(as_float(frame["n"], "int")).tolist() == [True] * len(ODD) + [False]
    assert np.isnan(as_float(frame["x"], "float")).tolist() == [True] * len(ODD) + [False]


def test_a_csv_block_with_0x_in_a_text_column_still_reads_its_ints(tmp_path: Path) -> None:
    """The hexadecimal guard reads a block's ints as text when "0x" appears anywhere in it: plain ints still pass."""
    path = write_csv_text(tmp_path / "c.csv", "n,x,y\n1,0.5,0\n0x2,1.5,1\n3,2.5,0\n")
    assert _bad(path) == {"n": 1}
    report = validate(path, contract())
    assert report.profile is not None
    assert report.profile.columns["n"].nulls == 1  # the bad value, as missing; 1 and 3 read as numbers


def test_an_int_past_2_53_is_checked_against_the_range_not_a_crash(tmp_path: Path) -> None:
    """Arrow compared an int column with a float bound as doubles and raised on 9007199254740993, so the batch
    was never judged (a bug of ours, retried for ever)."""
    spec = small_contract(
        key=None,
        columns=[
            {"name": "age", "type": "int", "nullable": False, "min": 0, "max": 36500},
            {"name": "y", "type": "int", "nullable": False, "min": 0, "max": 1},
        ],
    )
    path = write_csv_text(tmp_path / "b.csv", "age,y\n12,0\n9007199254740993,1\n-4611686018427387904,0\n")
    report = validate(path, spec)
    found = sorted((f.check, f.message, [e.value for e in f.examples]) for f in report.findings)
    assert found == [
        ("out_of_range", "1 value(s) above max=36500", ["9007199254740993"]),
        ("out_of_range", "1 value(s) below min=0", ["-4611686018427387904"]),
    ]


def test_text_numbers_in_parquet_view_and_large_strings_get_the_same_checks(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for kind in (pa.large_string(), pa.string_view()):
        path = tmp_path / f"{kind}.parquet"
        values = pa.array(["0x17", "5"], pa.string()).cast(kind)
        pq.write_table(pa.table({"n": values, "x": pa.array([0.5, 1.5]), "y": pa.array([0, 1])}), path)
        assert _bad(path) == {"n": 1}, kind


def test_a_csv_header_naming_a_contract_column_twice_is_refused_as_parquet_is(tmp_path: Path) -> None:
    """Both readers silently took the first copy; which one the producer meant is anybody's guess."""
    path = write_csv_text(tmp_path / "b.csv", "n,x,n,y,,\n1,0.5,2,0,,\n")
    [finding] = validate(path, contract()).errors
    assert finding.check == "corrupt_input"
    assert "names column(s) ['n'] more than once" in finding.message
    # Empty names from a header's trailing commas repeat too, but name no contract column: still read.
    assert validate(write_csv_text(tmp_path / "c.csv", "n,x,y,,\n1,0.5,0,,\n1,1.5,1,,\n"), contract()).errors == []
