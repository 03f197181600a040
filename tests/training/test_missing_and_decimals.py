"""Training reads the data as the validator does: the CSV text that counts as missing in each kind of column
(only the empty field in a string or category column, so the region code "NA" is a category), and Parquet decimal
columns as numbers (float64; int64 when whole), so a model trained on them writes a JSON sample input."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.spec import DataContract
from shared.validation import Finding, validate
from tests.training import synthetic
from tests.training.conftest import Problem, train_in_process
from training_jobs import data as training_data
from training_jobs.contract import Contract, parse_contract
from training_jobs.data import load_dataset
from training_jobs.preprocessing import as_float

TOKENS = ["NA", "N/A", "null", "NULL", "NaN", "None", "n/a", "#N/A", "<NA>", "nan"]


def tokens_contract() -> DataContract:
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
                {"name": "y", "type": "int", "nullable": False, "min": 0, "max": 1},
            ],
        }
    )


def test_csv_tokens_are_read_as_the_validator_reads_them(tmp_path: Path) -> None:
    from shared.typecast import MISSING_TOKENS

    assert training_data.MISSING_TOKENS == MISSING_TOKENS  # copied, not imported: training_jobs ships alone
    lines = ["region,code,amount,n,flag,y,extra"]
    lines += [f"NA,{t},{t},{t},{t},{i % 2},{t}" for i, t in enumerate(TOKENS)]
    lines += ["EU,,,,,0,", "APAC,x1,2.5,3,true,1,7"]
    path = tmp_path / "b.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = tokens_contract()
    assert validate(path, spec).ok

    frame = load_dataset(path, parse_contract(spec.model_dump(mode="json"))).frame
    assert frame["region"].tolist() == ["NA"] * len(TOKENS) + ["EU", "APAC"]
    assert frame["code"].tolist()[: len(TOKENS)] == TOKENS
    assert frame["code"].isna().tolist() == [False] * len(TOKENS) + [True, False]
    for column in ("amount", "n", "flag", "extra"):  # numbers, bools and columns outside the contract
        assert frame[column].isna().tolist() == [True] * (len(TOKENS) + 1) + [False], column


def _decimal_problem(folder: Path) -> Problem:
    """The synthetic problem, its numbers written as Parquet decimals (as ``astype(str).map(Decimal)`` does)."""
    data_dir, contract = synthetic.write_problem(folder, rows=1500, seed=7, positive_rate=0.1, fmt="parquet")
    [path] = data_dir.glob("*.parquet")
    table = pq.read_table(path)
    for name, kind in [*((f"x{i}", pa.decimal128(12, 4)) for i in range(5)), ("gap", pa.decimal128(12, 3))]:
        numbers = table.column(name).to_pylist()
        decimals = [None if v is None or v != v else Decimal(str(v)) for v in numbers]
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(decimals, kind))
    counts = [Decimal(v) for v in table.column("count").to_pylist()]
    table = table.set_column(table.schema.get_field_index("count"), "count", pa.array(counts, pa.decimal128(10, 0)))
    pq.write_table(table, path)
    return Problem(data_dir, contract, folder)


def test_parquet_decimals_are_read_as_floats_and_whole_ints(tmp_path: Path) -> None:
    problem = _decimal_problem(tmp_path)
    [path] = problem.data.glob("*.parquet")
    assert pa.types.is_decimal(pq.read_schema(path).field("x0").type)
    contract: Contract = parse_contract(json.loads(problem.contract.read_text()))
    frame = load_dataset(path, contract).frame
    assert frame["x0"].dtype == np.float64
    assert frame["gap"].dtype == np.float64
    assert frame["gap"].isna().any()
    assert frame["count"].dtype == np.int64
    written = synthetic.frame(1500, seed=7, positive_rate=0.1)
    assert frame["x0"].tolist() == pytest.approx(written["x0"].tolist(), rel=1e-15)  # Arrow's cast, as validation
    assert frame["count"].tolist() == written["count"].tolist()


def _validated_and_loaded(path: Path, column: str, kind: str) -> tuple[list[Finding], pd.DataFrame]:
    """The type_mismatch findings validation reports for ``column`` (of type ``kind``, beside an int label y), and
    the frame training reads from the same file."""
    spec = DataContract.model_validate(
        {
            "label": "y",
            "min_rows": 1,
            "max_missing_rate": 1.0,
            "columns": [{"name": column, "type": kind, "nullable": True}, {"name": "y", "type": "int"}],
        }
    )
    findings = [f for f in validate(path, spec).findings if f.check == "type_mismatch"]
    return findings, load_dataset(path, parse_contract(spec.model_dump(mode="json"))).frame


def test_an_int_decimal_with_a_fraction_is_bad_in_validation_and_missing_in_training(tmp_path: Path) -> None:
    table = pa.table(
        {
            "n": pa.array([Decimal("1"), Decimal("2.5"), None], pa.decimal128(5, 1)),
            "y": pa.array([0, 1, 0]),
        }
    )
    pq.write_table(table, tmp_path / "b.parquet")
    [finding], frame = _validated_and_loaded(tmp_path / "b.parquet", "n", "int")
    assert [(e.row, e.value) for e in finding.examples] == [(1, "2.5")]  # not quietly the int 2
    assert frame["n"].dtype == np.float64
    assert frame["n"].tolist()[:2] == [1.0, 2.5]
    # The feature the model sees: validation said "bad values were treated as missing", and so they are.
    assert np.isnan(as_float(frame["n"], "int")).tolist() == [False, True, True]


def test_a_number_other_than_0_or_1_in_a_bool_column_is_bad_in_validation_and_missing_in_training(
    tmp_path: Path,
) -> None:
    pq.write_table(pa.table({"flag": pa.array([1, 0, 2, -1]), "y": pa.array([0, 1, 0, 1])}), tmp_path / "b.parquet")
    [finding], frame = _validated_and_loaded(tmp_path / "b.parquet", "flag", "bool")
    assert [e.value for e in finding.examples] == ["2", "-1"]
    assert as_float(frame["flag"], "bool").tolist()[:2] == [1.0, 0.0]
    assert np.isnan(as_float(frame["flag"], "bool")[2:]).all(), "not quietly true"


def test_a_model_trained_on_parquet_decimals_writes_its_sample_input(tmp_path: Path) -> None:
    problem = _decimal_problem(tmp_path)
    assert train_in_process(problem, tmp_path / "out", "--max-steps", "5", "--batch-size", "128") == 0
    sample = json.loads((tmp_path / "out" / "sample_input.json").read_text())
    row = sample["data"][0]
    assert isinstance(row["x0"], float)
    assert isinstance(row["count"], int)
    assert isinstance(row["region"], str)
    rows = pd.DataFrame(sample["data"])
    assert not rows[["x0", "x1", "x2", "x3", "x4"]].isna().any().any()


def test_the_sample_input_writer_takes_any_value_a_reader_hands_over(tmp_path: Path) -> None:
    from training_jobs import train

    row = {
        "d": Decimal("2.50"),
        "nan": Decimal("NaN"),
        "inf": np.float32("inf"),
        "n": np.int64(3),
        "b": np.bool_(True),
        "t": pd.Timestamp("2024-01-02 03:04:05"),
        "gap": pd.NA,
    }
    train._write_json(tmp_path / "sample_input.json", {"data": [{k: train._json_value(v) for k, v in row.items()}]})
    [written] = json.loads((tmp_path / "sample_input.json").read_text())["data"]
    assert written == {"d": 2.5, "nan": None, "inf": None, "n": 3, "b": True, "t": "2024-01-02T03:04:05", "gap": None}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_text_label_written_na_is_an_unlabelled_row_to_validation_and_training(tmp_path: Path, fmt: str) -> None:
    """A category label's NA, null or empty cell is "no label yet", not a third class: validation does not warn
    of an unseen category, and training drops the row instead of refusing a binary label with four values."""
    spec = DataContract.model_validate(
        {
            "label": "y",
            "positive_class": "fraud",
            "min_rows": 1,
            "max_missing_rate": 1.0,
            "columns": [
                {"name": "x", "type": "float", "nullable": False},
                {"name": "y", "type": "category", "nullable": True, "categories": ["fraud", "legit"]},
            ],
        }
    )
    labels = ["fraud", "legit"] * 50 + ["NA", "null", ""]
    frame = pd.DataFrame({"x": np.arange(len(labels), dtype=float), "y": labels})
    path = tmp_path / f"b.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    report = validate(path, spec)
    assert report.ok, report.summary()
    assert [f.check for f in report.findings if f.check == "unseen_category"] == []
    contract = parse_contract({**spec.model_dump(mode="json"), "task": "binary"})
    loaded = training_data.drop_unlabelled(load_dataset(path, contract).frame, contract)
    assert len(loaded) == 100
    space = training_data.infer_label_space(loaded, contract)
    assert set(space.classes) == {"fraud", "legit"}
