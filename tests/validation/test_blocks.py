"""CSV is parsed in blocks of whole lines (typed, several at once); every block behaves like the whole file.

Small blocks (``CSV_BLOCK_SIZE`` patched down) put bad values, ragged rows and encoding errors in
later blocks, and the report must say exactly what a one-block read says, with the same rows.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shared.tabular_io as tabular_io
from shared.keyset import MAX_RUNS, KeySet, hash_keys
from shared.validation import ValidationReport, validate
from tests.validation.conftest import good_rows, rows_to_csv, small_contract, write_csv_text
from tests.validation.test_corrupt import ForwardOnly


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular_io, "CSV_BLOCK_SIZE", 300)  # a few lines per block


def findings(report: ValidationReport) -> list[tuple[str, str | None, int, list[tuple[int | None, str]]]]:
    return sorted((f.check, f.column, f.count, [(e.row, e.value) for e in f.examples]) for f in report.findings)


def same_report(a: ValidationReport, b: ValidationReport, same_batches: bool = False) -> None:
    """The same findings and profile; with other batch boundaries the reservoir samples (and, with
    no reference, the first batch's quantile edges) differ, so then only the exact parts compare."""
    assert (a.rows, a.ok) == (b.rows, b.ok)
    assert findings(a) == findings(b)
    assert a.profile is not None
    assert b.profile is not None
    if same_batches:
        assert a.profile.to_json() == b.profile.to_json()
        return
    for name, p in a.profile.columns.items():
        q = b.profile.columns[name]
        assert (p.rows, p.nulls) == (q.rows, q.nulls)
        if p.numeric is not None and q.numeric is not None:
            assert (p.numeric.count, p.numeric.min, p.numeric.max) == (q.numeric.count, q.numeric.min, q.numeric.max)
            assert p.numeric.mean == pytest.approx(q.numeric.mean, rel=1e-12)
            if p.numeric.edges == q.numeric.edges:
                assert p.numeric.hist == q.numeric.hist
        if p.categorical is not None and q.categorical is not None:
            assert (p.categorical.counts, p.categorical.other) == (q.categorical.counts, q.categorical.other)


def messy_rows() -> list[dict[str, object]]:
    rows = good_rows(400)
    rows[5]["x"] = -3.0  # out of range, first block
    rows[170]["x"] = "abc"  # not a float, a later block
    rows[171]["n"] = "2.5"  # not a whole number
    rows[250]["n"] = "7.0"  # a whole number written as a float: fine
    rows[300]["c"] = "zz"  # unseen category
    rows[310]["x"] = None  # null in a required column
    rows[390]["id"] = "r3"  # a duplicate key, far from the first
    return [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in rows]


def test_bad_values_in_later_blocks_are_found_at_their_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = rows_to_csv(tmp_path / "messy.csv", messy_rows())
    whole = validate(path, small_contract())  # one block
    assert whole.profile is not None
    monkeypatch.setattr(tabular_io, "CSV_BLOCK_SIZE", 300)
    blocks = validate(path, small_contract())
    same_report(whole, blocks)
    # On the same histogram edges (the first report's) the histograms agree bin for bin.
    on_edges = validate(path, small_contract(), reference=whole.profile).profile
    assert on_edges is not None
    for name in ("x", "n", "y"):
        a, b = on_edges.columns[name].numeric, whole.profile.columns[name].numeric
        assert a is not None
        assert b is not None
        assert (a.edges, a.hist) == (b.edges, b.hist)
    by_check = {f.check: f for f in blocks.findings}
    assert [(e.row, e.value) for e in by_check["type_mismatch"].examples] in ([(170, "abc")], [(171, "2.5")])
    assert {(f.column, f.examples[0].row) for f in blocks.findings if f.check == "type_mismatch"} == {
        ("x", 170),
        ("n", 171),
    }
    assert [e.row for e in by_check["out_of_range"].examples] == [5]
    assert [e.row for e in by_check["unseen_category"].examples] == [300]
    assert [e.row for e in by_check["null_in_required"].examples] == [310]
    assert [(e.row, e.value) for e in by_check["duplicate_key"].examples] == [(390, "r3")]
    profile = blocks.profile
    assert profile is not None
    assert profile.columns["n"].numeric is not None
    assert profile.columns["n"].numeric.count == 399  # 7.0 counted, 2.5 not


def test_ragged_rows_in_later_blocks_keep_their_row_numbers(tmp_path: Path, small_blocks: None) -> None:
    lines = ["id,x,n,c,b,ts,y"] + [f"r{i},{i % 100},{i % 10},a,true,,{i % 2}" for i in range(200)]
    lines[1 + 150] = "r150,1,2"  # data row 150: too few fields
    lines[1 + 180] = "r180,1,2,a,true,,1,EXTRA"  # data row 180: too many
    lines.insert(1 + 100, "")  # a blank line is not a row
    report = validate(write_csv_text(tmp_path / "ragged.csv", "\n".join(lines) + "\n"), small_contract())
    finding = next(f for f in report.findings if f.check == "malformed_rows")
    assert finding.count == 2
    assert [e.row for e in finding.examples] == [150, 180]
    assert report.rows == 198
    # Malformed rows get the file's lines (the header is line 1), the blank line before them counted.
    assert [e.line for e in finding.examples] == [153, 183]


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("last_newline", [True, False])
def test_line_endings_and_a_missing_final_newline(
    tmp_path: Path, small_blocks: None, ending: str, last_newline: bool
) -> None:
    lines = ["id,x,n,c,b,ts,y"] + [f"r{i},{i % 100},{i % 10},{'ab'[i % 2]},true,,{i % 2}" for i in range(120)]
    text = ending.join(lines) + (ending if last_newline else "")
    report = validate(write_csv_text(tmp_path / "e.csv", text), small_contract(max_missing_rate=1.0))
    assert report.ok, report.summary()
    assert report.rows == 120
    assert report.profile is not None
    assert report.profile.columns["c"].categorical is not None
    assert report.profile.columns["c"].categorical.counts == {"a": 60, "b": 60}


def test_wrong_encoding_in_a_later_block(tmp_path: Path, small_blocks: None) -> None:
    lines = ["id,x,n,c,b,ts,y"] + [f"r{i},1,1,a,true,,1" for i in range(100)]
    lines[80] = "r79,1,1,caf\xe9,true,,1"
    report = validate(write_csv_text(tmp_path / "l.csv", "\n".join(lines).encode("latin-1")), small_contract())
    corrupt = [f for f in report.findings if f.check == "corrupt_input"]
    assert len(corrupt) == 1
    assert "UTF-8" in corrupt[0].message
    assert "after" in corrupt[0].message  # the rows before the bad block were read


def test_forward_only_stream_in_many_small_blocks(tmp_path: Path, small_blocks: None) -> None:
    path = rows_to_csv(tmp_path / "s.csv", messy_rows())
    data = path.read_bytes()
    streamed = validate(ForwardOnly(data), small_contract())
    assert streamed.bytes_read == len(data)
    same_report(validate(path, small_contract()), streamed)
    same_report(streamed, validate(io.BytesIO(data), small_contract()))  # a seekable stream


def test_a_line_longer_than_a_block(tmp_path: Path, small_blocks: None) -> None:
    rows = good_rows(50)
    rows[20]["id"] = "k" * 2000
    report = validate(rows_to_csv(tmp_path / "long.csv", rows), small_contract())
    assert report.ok, report.summary()
    assert report.rows == 50


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_do_not_change_the_report(tmp_path: Path, small_blocks: None, threads: int) -> None:
    path = rows_to_csv(tmp_path / "t.csv", messy_rows())
    same_report(
        validate(path, small_contract(), threads=1),
        validate(path, small_contract(), threads=threads),
        same_batches=True,
    )


def test_parquet_categories_read_as_dictionaries(tmp_path: Path) -> None:
    rows = good_rows(300)
    rows[123]["c"] = "zz"
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "plain.parquet", use_dictionary=False)
    pq.write_table(table, tmp_path / "dict.parquet", use_dictionary=True)
    a, b = validate(tmp_path / "plain.parquet", small_contract()), validate(tmp_path / "dict.parquet", small_contract())
    same_report(a, b)
    unseen = next(f for f in b.findings if f.check == "unseen_category")
    assert (unseen.count, [(e.row, e.value) for e in unseen.examples]) == (1, [(123, "zz")])
    # An in-memory table with a dictionary column (pandas categoricals arrive like this) agrees too.
    encoded = table.set_column(3, "c", table.column("c").dictionary_encode())
    same_report(a, validate(encoded, small_contract()))


def test_nan_and_nulls_in_parquet_floats(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(good_rows(10))
    x = pa.array([1.0, float("nan"), None, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    pq.write_table(table.set_column(1, "x", x), tmp_path / "n.parquet")
    report = validate(tmp_path / "n.parquet", small_contract())
    nulls = next(f for f in report.findings if f.check == "null_in_required")
    assert (nulls.count, [e.row for e in nulls.examples]) == (2, [1, 2])
    assert report.profile is not None
    assert report.profile.columns["x"].numeric is not None
    assert report.profile.columns["x"].numeric.count == 8
    assert report.profile.columns["x"].numeric.mean == pytest.approx(np.mean([1.0, 4, 5, 6, 7, 8, 9, 10]))


def test_keyset_with_many_runs_finds_every_repeat() -> None:
    keyset = KeySet(max_keys=1_000_000)
    rng = np.random.default_rng(3)
    batches = [np.arange(i * 500, (i + 1) * 500) for i in range(3 * MAX_RUNS)]  # forces merges
    found = 0
    for i, batch in enumerate(batches):
        repeats = rng.choice(i * 500, 7, replace=False) if i else np.array([], dtype=np.int64)
        flags = keyset.add(hash_keys(pa.array(np.concatenate([batch, repeats]))))
        assert not flags[: len(batch)].any()
        assert flags[len(batch) :].all()
        found += int(flags.sum())
    assert found == 7 * (len(batches) - 1)
    assert keyset.tracked == 500 * len(batches)
    assert keyset.coverage == 1.0


# A ragged row that is also not UTF-8 makes pyarrow's invalid-row callback fail to decode its text
# (an "exception ignored" inside pyarrow); the block then fails to parse and is reported as corrupt.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_damaged_files_give_a_report_never_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, data: st.DataObject
) -> None:
    """Cut a good file anywhere and scribble on it: always a report, and never the catch-all
    "could not be validated" (every failure is understood and explained)."""
    monkeypatch.setattr(tabular_io, "CSV_BLOCK_SIZE", 256)
    path = tmp_path / f"good.{kind}"
    table = pa.Table.from_pylist(good_rows(200))
    if kind == "csv":
        rows_to_csv(path, good_rows(200))
    else:
        pq.write_table(table, path, row_group_size=50)
    raw = bytearray(path.read_bytes())
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    damaged = raw[:cut]
    for _ in range(data.draw(st.integers(0, 4), label="scribbles")):
        if damaged:
            at = data.draw(st.integers(0, len(damaged) - 1), label="at")
            damaged[at] = data.draw(st.integers(0, 255), label="byte")
    target = tmp_path / f"damaged.{kind}"
    target.write_bytes(bytes(damaged))
    for source in (target, ForwardOnly(bytes(damaged))):
        report = validate(source, small_contract(), name=f"damaged.{kind}")
        assert isinstance(report, ValidationReport)
        assert not [f for f in report.findings if "could not be validated" in f.message], report.summary()


def test_an_error_in_a_lane_is_raised_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug while checking one column on a worker lane reaches the caller (no hang). It says nothing
    about the batch, so it raises rather than fail the report (which would quarantine a good batch)."""
    import shared.validation as validation

    original = validation._Validator._column

    def broken(self: validation._Validator, name: str, column: pa.Array, offset: int) -> None:
        if name == "n" and offset > 0:
            raise RuntimeError("boom")
        original(self, name, column, offset)

    monkeypatch.setattr(validation._Validator, "_column", broken)
    monkeypatch.setattr(tabular_io, "CSV_BLOCK_SIZE", 300)
    with pytest.raises(RuntimeError, match="boom"):
        validate(rows_to_csv(tmp_path / "b.csv", good_rows(200)), small_contract(), threads=2)


def quoted_newline_csv(path: Path) -> Path:
    # Every 7th key is a quoted value whose second line looks like a whole record: a block cut inside
    # the quotes would forge that record.
    lines = ["id,x,n,c,b,ts,y"]
    for i in range(200):
        key = f'"r{i}\nr9{i},1,2,a,true,,1"' if i % 7 == 0 else f"r{i}"
        lines.append(f"{key},{i % 100},{i % 10},{'ab'[i % 2]},true,,{i % 2}")
    return write_csv_text(path, "\n".join(lines) + "\n")


@pytest.mark.parametrize("block_size", [64, 97, 300, 4 << 20])
def test_a_quoted_newline_never_splits_a_record_whatever_the_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_size: int
) -> None:
    monkeypatch.setattr(tabular_io, "CSV_BLOCK_SIZE", block_size)
    report = validate(quoted_newline_csv(tmp_path / "quoted.csv"), small_contract(max_missing_rate=1.0))
    assert report.ok, report.summary()
    assert report.rows == 200
    assert report.profile is not None
    assert report.profile.columns["x"].rows == 200


def test_a_quote_that_is_never_closed_is_a_corrupt_file_not_a_memory_blow_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tabular_io, "CSV_BLOCK_SIZE", 64)
    monkeypatch.setattr(tabular_io, "MAX_CSV_RECORD", 1024)
    lines = ["id,x,n,c,b,ts,y", "r0,1,2,a,true,,1", '"r1,1,2,a,true,,1'] + [
        f"r{i},1,2,a,true,,1" for i in range(2, 200)
    ]
    report = validate(write_csv_text(tmp_path / "open-quote.csv", "\n".join(lines) + "\n"), small_contract())
    assert not report.ok
    assert any("never closed" in f.message for f in report.findings), report.summary()
