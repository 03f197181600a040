"""training_jobs reads a file as the app's validator detected it: Parquet by its PAR1 magic, whatever its name.

A landing blob named ``export-2026-11-30`` or ``part-0000.snappy`` that is Parquet passes validation
(shared.tabular_io detects it by its first bytes); train.py must read it as Parquet too, or the job
fails (exit 2, not retried) on data that was accepted.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from shared.tabular_io import CorruptInput, TabularSource, _detect_format
from tests.training import synthetic
from training_jobs.contract import Contract, parse_contract
from training_jobs.data import PARQUET_MAGIC, file_format, load_dataset, load_manifest, sha256_file


@pytest.fixture(scope="module")
def contract() -> Contract:
    return parse_contract(synthetic.contract())


def _manifest(folder: Path, names: list[str]) -> Path:
    files = [{"name": n, "sha256": sha256_file(folder / n), "size": (folder / n).stat().st_size} for n in names]
    path = folder.parent / "manifest.json"
    path.write_text(json.dumps({"model": "m", "run_id": "r", "files": files}), encoding="utf-8")
    return path


def _same_rows(read: pd.DataFrame, written: pd.DataFrame) -> None:
    assert len(read) == len(written)
    assert list(read["row_id"]) == list(written["row_id"])
    assert read["x0"].tolist() == pytest.approx(written["x0"].tolist())
    assert list(read["region"].astype(str)) == list(written["region"].astype(str))


@pytest.mark.parametrize("name", ["export-2026-11-30", "part-0000.snappy", "PART-0001.SNAPPY.PARQUET"])
def test_a_parquet_file_of_any_name_is_read_as_parquet(contract: Contract, tmp_path: Path, name: str) -> None:
    written = synthetic.frame(150, seed=3)
    data = tmp_path / "data"
    data.mkdir()
    written.to_parquet(data / name, index=False)
    assert (data / name).read_bytes()[:4] == PARQUET_MAGIC

    listed = load_dataset(data, contract, load_manifest(_manifest(data, [name])))  # what a platform job does
    _same_rows(listed.frame, written)
    assert listed.files == [{"name": name, "sha256": sha256_file(data / name), "rows": 150}]

    alone = load_dataset(data / name, contract)  # --data naming the one file
    _same_rows(alone.frame, written)


def test_parquet_and_csv_of_odd_names_mix_in_one_manifest(contract: Contract, tmp_path: Path) -> None:
    first, second = synthetic.frame(80, seed=4), synthetic.frame(70, seed=5)
    data = tmp_path / "data"
    data.mkdir()
    first.to_parquet(data / "export-2026-11-30", index=False)
    second.to_csv(data / "export-2026-12-01", index=False)
    dataset = load_dataset(data, contract, load_manifest(_manifest(data, ["export-2026-11-30", "export-2026-12-01"])))
    _same_rows(dataset.frame, pd.concat([first, second], ignore_index=True))
    assert str(dataset.frame["region"].dtype) == "string"  # categories read as text from both formats


CSV_HEAD = b"row_id,x0,label\n1,0.5,0\n"
GZIP_HEAD = gzip.compress(CSV_HEAD)
NAMES = [
    "batch.parquet",
    "batch.PQ",
    "batch.csv",
    "batch.CSV",
    "batch.txt",
    "batch.csv.gz",
    "export-2026-11-30",
    "part-0000.snappy",
    "part-0000.snappy.parquet",
    "folder.parquet/part-0",
    "data.json",
]
HEADS = {"parquet magic": PARQUET_MAGIC + b"\x15\x00\x15", "csv text": CSV_HEAD, "gzip": GZIP_HEAD, "empty": b""}


@pytest.mark.parametrize("head", HEADS.values(), ids=HEADS.keys())
@pytest.mark.parametrize("name", NAMES)
def test_training_chooses_the_reader_the_validator_detects(name: str, head: bytes) -> None:
    assert file_format(name, head) == _detect_format(name, head)


def test_the_rule_on_the_cases_of_the_defect() -> None:
    parquet = PARQUET_MAGIC + b"\x15\x00"
    assert file_format("export-2026-11-30", parquet) == "parquet"
    assert file_format("part-0000.snappy", parquet) == "parquet"
    assert file_format("export-2026-11-30", CSV_HEAD) == "csv"
    assert file_format("batch.csv", parquet) == "csv"  # the name wins, as in the validator
    assert file_format("batch.parquet", CSV_HEAD) == "parquet"


def test_gzip_csv_is_read_by_training_though_the_validator_rejects_it(contract: Contract, tmp_path: Path) -> None:
    """The one difference left, and it cannot lose data: training reads a .csv.gz (by pandas' suffix
    inference), which the validator never lets through to landing (it is binary, not CSV text)."""
    written = synthetic.frame(60, seed=6)
    path = tmp_path / "batch.csv.gz"
    written.to_csv(path, index=False)
    _same_rows(load_dataset(path, contract).frame, written)
    with pytest.raises(CorruptInput, match="binary"), TabularSource(path):
        pass
