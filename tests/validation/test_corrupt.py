"""Corrupt or unusual input gives a failed report that says why — never an exception — and streams work."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.validation import ValidationReport, validate
from tests.validation.conftest import good_rows, rows_to_csv, small_contract, write_csv_text


class ForwardOnly(io.RawIOBase):
    """A stream that can only be read forwards, like a blob download."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._inner.read(min(len(buffer), 1000))  # small reads, like a network stream
        buffer[: len(chunk)] = chunk
        return len(chunk)


def corrupt(report: ValidationReport) -> str:
    assert not report.ok
    found = [f for f in report.findings if f.check == "corrupt_input"]
    assert len(found) == 1, report.summary()
    assert found[0].remediation
    return found[0].message


def test_empty_file(tmp_path: Path) -> None:
    message = corrupt(validate(write_csv_text(tmp_path / "empty.csv", b""), small_contract()))
    assert "empty" in message


def test_binary_junk(tmp_path: Path) -> None:
    junk = bytes(range(256)) * 64
    message = corrupt(validate(write_csv_text(tmp_path / "junk.csv", junk), small_contract()))
    assert "binary" in message
    # Junk under a .parquet name (or detected by nothing at all) is reported too.
    assert "Parquet" in corrupt(validate(write_csv_text(tmp_path / "junk.parquet", junk), small_contract()))


def test_a_utf16_export_is_told_to_be_saved_as_utf8(tmp_path: Path) -> None:
    """Excel's "Unicode Text" and PowerShell's redirects write UTF-16 with a byte-order mark: not junk."""
    text = "id,x\nr1,1\n"
    for encoding in ("utf-16", "utf-16-be"):
        data = text.encode(encoding) if encoding == "utf-16" else b"\xfe\xff" + text.encode(encoding)
        report = validate(write_csv_text(tmp_path / f"{encoding}.csv", data), small_contract())
        assert "UTF-16 text" in corrupt(report)
        assert "CSV UTF-8" in next(f.remediation for f in report.findings if f.check == "corrupt_input")


def test_a_parquet_file_named_csv_is_told_to_take_its_own_name(tmp_path: Path) -> None:
    """The name's suffix decides the format (as the training job decides it), so the fix is the name, not the file."""
    pq.write_table(pa.Table.from_pylist(good_rows(100)), tmp_path / "batch.parquet")
    named_csv = write_csv_text(tmp_path / "batch.csv", (tmp_path / "batch.parquet").read_bytes())
    report = validate(named_csv, small_contract())
    assert "is Parquet (it starts with PAR1) but its name says CSV" in corrupt(report)
    assert [f.remediation for f in report.findings] == ["rename it to .parquet and upload it again"]


def test_truncated_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(good_rows(1000)), tmp_path / "whole.parquet")
    data = (tmp_path / "whole.parquet").read_bytes()
    cut = write_csv_text(tmp_path / "cut.parquet", data[: len(data) // 2])
    message = corrupt(validate(cut, small_contract()))
    assert "Parquet" in message
    report = validate(cut, small_contract())
    assert "truncated" in report.findings[0].remediation


def test_parquet_with_corrupt_page(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(good_rows(5000)), tmp_path / "p.parquet", compression="snappy")
    data = bytearray((tmp_path / "p.parquet").read_bytes())
    for i in range(200, 1200):  # scribble over the first column chunks, keep the footer intact
        data[i] = 0xFF
    report = validate(write_csv_text(tmp_path / "bad.parquet", bytes(data)), small_contract())
    assert not report.ok
    assert {f.check for f in report.findings} & {"corrupt_input", "type_mismatch"}


def test_ragged_csv_rows_are_counted_and_skipped(tmp_path: Path) -> None:
    text = "id,x,n,c,b,ts,y\nr1,1,1,a,true,,1\nr2,2,2,a,true,,0,EXTRA\nr3,3,3,b,false,,1\nr4,4\n"
    report = validate(write_csv_text(tmp_path / "ragged.csv", text), small_contract())
    finding = next(f for f in report.findings if f.check == "malformed_rows")
    assert finding.count == 2
    assert finding.severity == "error"
    assert "8 fields" in finding.examples[0].value
    assert report.rows == 2  # the good rows were still checked


def test_wrong_encoding(tmp_path: Path) -> None:
    text = "id,x,n,c,b,ts,y\nr1,1,1,caf\xe9,true,,1\n".encode("latin-1")
    message = corrupt(validate(write_csv_text(tmp_path / "latin1.csv", text), small_contract()))
    assert "UTF-8" in message
    header = "id,x,n,c,b,ts,\xff\n".encode("latin-1")
    assert "UTF-8" in corrupt(validate(write_csv_text(tmp_path / "h.csv", header), small_contract()))


def test_unbalanced_quote(tmp_path: Path) -> None:
    text = 'id,x,n,c,b,ts,y\nr1,1,1,"a,true,,1\nr2,2,2,a,true,,0\n'
    report = validate(write_csv_text(tmp_path / "quote.csv", text), small_contract())
    assert not report.ok


def test_missing_file_is_a_report(tmp_path: Path) -> None:
    assert "does not exist" in corrupt(validate(tmp_path / "nope.csv", small_contract()))


def test_utf8_bom_header_is_fine(tmp_path: Path) -> None:
    path = rows_to_csv(tmp_path / "bom.csv", good_rows(5))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert validate(path, small_contract()).ok


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_forward_only_stream_is_read_in_one_pass(tmp_path: Path, kind: str) -> None:
    table = pa.Table.from_pylist(good_rows(3000))
    sink = io.BytesIO()
    if kind == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, sink)
    else:
        pq.write_table(table, sink)
    data = sink.getvalue()
    report = validate(ForwardOnly(data), small_contract())
    assert report.ok, report.summary()
    assert report.format == kind  # detected from the magic bytes, no name needed
    assert report.rows == 3000
    assert report.bytes_read == len(data)


@pytest.mark.azurite
def test_blob_download_stream(azurite_connection_string: str, tmp_path: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    container = service.create_container(f"landing-{uuid.uuid4().hex[:8]}")
    rows = good_rows(5000)
    rows[42]["x"] = -1.0
    data = rows_to_csv(tmp_path / "b.csv", rows).read_bytes()
    container.upload_blob("fraud/2024/batch.csv", data)
    # Small chunks so the download really streams in several requests.
    blob = service.get_blob_client(container.container_name, "fraud/2024/batch.csv")
    blob._config.max_single_get_size = 4096
    blob._config.max_chunk_get_size = 4096
    stream = blob.download_blob()
    report = validate(stream, small_contract(), name="fraud/2024/batch.csv")
    assert report.source == "fraud/2024/batch.csv"
    assert report.rows == 5000
    assert report.bytes_read == len(data)
    finding = next(f for f in report.findings if f.check == "out_of_range")
    assert finding.examples[0].row == 42
