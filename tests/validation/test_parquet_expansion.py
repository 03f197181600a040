"""A Parquet file that decodes to far more than its size is refused before it is decoded, and wide rows are read in
batches bounded by bytes, not rows.

A security review (2026-11-30) found an 8.6 KB file whose key column repeats one 8 KiB string through its dictionary:
it took 2.2 GB and 21 s to validate, and passed; a 1.7 MB one with 200,000 such rows took 2.3 GB and 38 s. Batches
were 131,072 rows whatever their width.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared import parquet_size
from shared.tabular_io import PARQUET_BATCH_BYTES, PARQUET_BATCH_ROWS, TabularSource
from shared.validation import validate
from tests.validation.conftest import good_rows, small_contract
from tests.validation.test_corrupt import ForwardOnly, corrupt


def _rows_sharing_values(path: Path, rows: int, values: list[str]) -> Path:
    """``rows`` rows whose ``id`` takes ``values`` in turn through the file's dictionary, written without pyarrow's
    schema (as any other writer would), so a reader decodes ``id`` as plain strings. Nothing this size is built in
    memory: the column is written as dictionary indices."""
    table = _with_ids(pa.Table.from_pylist(good_rows(rows)), np.arange(rows) % len(values), values)
    pq.write_table(table, path, store_schema=False)
    return path


def _with_ids(table: pa.Table, indices: np.ndarray, values: list[str]) -> pa.Table:
    ids = pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(values))
    return table.set_column(0, "id", ids)


def test_a_small_file_repeating_a_long_value_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    """The review's shape: 200,000 rows of one 8 KiB key, 1.6 GB decoded from a file of a few hundred KB."""
    path = _rows_sharing_values(tmp_path / "bomb.parquet", 200_000, ["K" * 8192])
    assert path.stat().st_size < 2_000_000
    started = time.perf_counter()
    report = validate(path, small_contract())
    seconds = time.perf_counter() - started
    message = corrupt(report)
    assert "the Parquet file would decode to 1.5 GB from" in message
    assert "column 'id' repeats values of up to 8,192 bytes through its dictionary" in message
    assert "split it into smaller files" in report.findings[0].remediation
    assert report.rows == 0, "refused before a row was read"
    assert seconds < 10, f"{seconds:.1f} s: the file was decoded"  # it took 38 s before; well under 1 s now


def test_a_long_value_in_a_column_pyarrow_wrote_as_a_dictionary_is_counted(tmp_path: Path) -> None:
    """With pyarrow's schema kept in the file, the key column is read back as a dictionary (small), but the
    validator casts a text column that is not a category to plain strings: 40 s and 1.8 GB, and it passed."""
    path = tmp_path / "kept-schema.parquet"
    rows = pa.Table.from_pylist(good_rows(1000)).take(pa.array(np.arange(200_000) % 1000))
    pq.write_table(_with_ids(rows, np.zeros(200_000), ["K" * 8192]), path)  # pyarrow's schema kept, as by default
    assert pa.types.is_dictionary(pq.ParquetFile(path).schema_arrow.field("id").type)
    assert "repeats values of up to 8,192 bytes" in corrupt(validate(path, small_contract()))


def test_delta_coded_text_the_footer_cannot_bound_is_counted_as_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DELTA_BYTE_ARRAY pages repeat the previous value's prefix for free: 200,000 copies of an 8 KiB key fit in
    100 KB of pages (31 s and 2.4 GB, and it passed). Such a column is read in small batches whose real size is
    counted; the floor is lowered here so the file stays small."""
    monkeypatch.setattr(parquet_size, "UNBOUNDED_FLOOR", 8 << 20)
    rows = pa.Table.from_pylist(good_rows(1000)).take(pa.array(np.arange(4000) % 1000))
    keys = pa.array(["D" * 8186 + f"{i:06d}" for i in range(4000)])  # unique, sharing all but the tail
    path = tmp_path / "delta.parquet"
    pq.write_table(
        rows.set_column(0, "id", keys),
        path,
        use_dictionary=False,
        column_encoding={"id": "DELTA_BYTE_ARRAY"},
        store_schema=False,
    )
    with TabularSource(path) as source:
        assert source._parquet_batch_rows(["id"], set())[0] <= parquet_size.UNBOUNDED_BATCH_ROWS
    report = validate(path, small_contract())
    assert "decoded to more than" in corrupt(report)
    assert report.rows < 4000, "stopped while reading, at the batch past the limit"


@pytest.mark.parametrize("shape", ["list", "struct"])
def test_a_nested_column_is_refused_before_it_is_read(tmp_path: Path, shape: str) -> None:
    """A list or struct of strings where the contract has one value per row (it passed as a string column)."""
    table = pa.Table.from_pylist(good_rows(100))
    ids = table.column("id").combine_chunks()
    nested = (
        pa.ListArray.from_arrays(pa.array(np.arange(101, dtype=np.int32)), ids)
        if shape == "list"
        else pa.StructArray.from_arrays([ids], ["v"])
    )
    pq.write_table(table.set_column(0, "id", nested), tmp_path / "nested.parquet")
    assert "not one value per row" in corrupt(validate(tmp_path / "nested.parquet", small_contract()))


def test_a_dot_in_a_column_name_does_not_hide_the_column(tmp_path: Path) -> None:
    """Chunks were matched to columns by the first part of their dotted path: 'order.id' was never sized."""
    path = _rows_sharing_values(tmp_path / "dotted.parquet", 200_000, ["K" * 8192])
    table = pq.read_table(path, read_dictionary=["id"]).rename_columns(["order.id", *pq.read_schema(path).names[1:]])
    pq.write_table(table, tmp_path / "dotted.parquet", store_schema=False)
    contract = small_contract(key="order.id", columns=[
        {"name": "order.id", "type": "string", "nullable": False, "feature": False},
        *[c.model_dump() for c in small_contract().columns if c.name != "id"],
    ])  # fmt: skip
    assert "repeats values of up to 8,192 bytes" in corrupt(validate(tmp_path / "dotted.parquet", contract))


def test_a_column_named_twice_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(good_rows(100))
    pq.write_table(table.append_column("id", pa.array([f"z{i}" for i in range(100)])), tmp_path / "twice.parquet")
    assert "names column(s) ['id'] more than once" in corrupt(validate(tmp_path / "twice.parquet", small_contract()))


def test_a_long_value_hidden_in_a_later_row_group_is_found(tmp_path: Path) -> None:
    """The first row group is innocent; the second's dictionary holds the long value every one of its rows uses."""
    short = _with_ids(pa.Table.from_pylist(good_rows(1000)), np.arange(1000), [f"r{i}" for i in range(1000)])
    long_rows = pa.Table.from_pylist(good_rows(1)).take(pa.array(np.zeros(300_000, dtype=np.int64)))
    long_rows = _with_ids(long_rows, np.zeros(300_000), ["L" * 8192])
    with pq.ParquetWriter(tmp_path / "late.parquet", short.schema, store_schema=False) as writer:
        writer.write_table(short)
        writer.write_table(long_rows)
    assert pq.ParquetFile(tmp_path / "late.parquet").metadata.num_row_groups == 2
    assert "repeats values of up to 8,192 bytes" in corrupt(validate(tmp_path / "late.parquet", small_contract()))


def test_pages_that_decompress_far_beyond_the_file_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No dictionary: plain values that compress a thousandfold. The floor is lowered so the file stays small."""
    monkeypatch.setattr(parquet_size, "DECODED_FLOOR", 1 << 20)
    table = pa.Table.from_pylist(good_rows(20_000))
    table = table.set_column(0, "id", pa.array([f"{i:08d}" + "P" * 2040 for i in range(20_000)]))
    pq.write_table(table, tmp_path / "zstd.parquet", compression="zstd", use_dictionary=False)
    message = corrupt(validate(tmp_path / "zstd.parquet", small_contract()))
    assert "its pages hold" in message
    assert "once decompressed" in message


def test_wide_rows_are_read_in_batches_bounded_by_bytes(tmp_path: Path) -> None:
    """12,000 distinct keys of 8 KiB (100 MB decoded, under the floor): read in batches of about
    PARQUET_BATCH_BYTES (some 4,000 rows), so memory follows the bytes, not the row count; the file validates."""
    values = [f"{i:06d}" + "W" * 8186 for i in range(12_000)]
    path = _rows_sharing_values(tmp_path / "wide.parquet", 12_000, values)
    with TabularSource(path) as source:
        sizes = [(batch.num_rows, batch.nbytes) for batch in source.batches(["id", "x"])]
    assert sum(rows for rows, _ in sizes) == 12_000
    assert max(rows for rows, _ in sizes) < PARQUET_BATCH_ROWS // 16
    assert max(nbytes for _, nbytes in sizes) <= 1.2 * PARQUET_BATCH_BYTES
    report = validate(path, small_contract())
    assert report.ok, report.summary()


@pytest.mark.parametrize("stream", [False, True], ids=["path", "forward-only stream"])
def test_an_ordinary_file_keeps_full_batches(tmp_path: Path, stream: bool) -> None:
    """Narrow rows are not cut into smaller batches (the validator's speed depends on them), from a path or a
    stream spooled to disk."""
    pq.write_table(pa.Table.from_pylist(good_rows(140_000)), tmp_path / "ok.parquet", store_schema=False)
    source = ForwardOnly((tmp_path / "ok.parquet").read_bytes()) if stream else tmp_path / "ok.parquet"
    with TabularSource(source, fmt="parquet") as table:
        rows = [batch.num_rows for batch in table.batches(table.columns)]
    assert rows[0] == PARQUET_BATCH_ROWS
    report = validate(io.BufferedReader(ForwardOnly((tmp_path / "ok.parquet").read_bytes())), small_contract())
    assert report.ok, report.summary()


def test_a_long_unseen_category_is_reported_by_its_code_not_decoded(tmp_path: Path) -> None:
    """The examples of unseen categories were taken by decoding the whole column: 131,072 rows of one 16 KiB
    value overflowed Arrow's string array (an exception, not a verdict), and 8 KB ones took 1.25 GB."""
    rows = pa.Table.from_pylist(good_rows(1000)).take(pa.array(np.arange(131_072) % 1000))
    codes = pa.DictionaryArray.from_arrays(pa.array(np.zeros(131_072, dtype=np.int32)), pa.array(["Z" * 16384]))
    pq.write_table(rows.set_column(3, "c", codes), tmp_path / "category.parquet", store_schema=False)
    report = validate(tmp_path / "category.parquet", small_contract())
    unseen = [f for f in report.findings if f.check == "unseen_category"]
    assert len(unseen) == 1, report.summary()
    assert unseen[0].examples[0].value.startswith("ZZZZ")
