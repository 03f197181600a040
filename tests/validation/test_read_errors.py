"""A read that fails for a reason that says nothing about the data raises; only bad bytes are findings.

``validate_blob`` quarantines a batch whose report has errors, and quarantining deletes the blob
from landing: a connection reset, a timeout, a blob overwritten or deleted mid-read, or a bug of
ours must never turn a good batch into a ``corrupt_input`` finding. Those propagate out of
``validate`` (the activity retries or fails); corrupt CSV text or a truncated Parquet file still
gives a failed report. The streams here are in memory (no Azure): they fail on the read that
reaches byte ``at``, after serving every byte before it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from azure.core.exceptions import HttpResponseError, IncompleteReadError, ServiceRequestError, ServiceResponseError

import shared.tabular_io as tabular_io
import shared.validation as validation
from shared.storage import BlobChangedError, BlobMissingError
from shared.validation import ValidationReport, validate
from tests.validation.conftest import good_rows, small_contract

ROWS = 40_000  # about 1.9 MiB of CSV and 280 KiB of Parquet: the header peek and Parquet's footer read are not the end


def failures() -> dict[str, Callable[[], BaseException]]:
    """Every kind of failure that says nothing about the bytes, by name (fresh instances per read)."""
    return {
        "ServiceResponseError": lambda: ServiceResponseError("Connection reset by peer"),
        "ServiceRequestError": lambda: ServiceRequestError("Failed to establish a new connection"),
        "IncompleteReadError": lambda: IncompleteReadError(message="Connection broken: IncompleteRead"),
        "HttpResponseError": lambda: HttpResponseError(message="Server failed to authenticate the request"),
        "BlobChangedError": lambda: BlobChangedError("blob landing/x changed since eTag 0x1", "train on the new one"),
        "BlobMissingError": lambda: BlobMissingError("blob landing/x is gone", "nothing to read"),
        "ConnectionResetError": lambda: ConnectionResetError(104, "Connection reset by peer"),
        "TimeoutError": lambda: TimeoutError("The read operation timed out"),
        "TypeError": lambda: TypeError("a bytes-like object is required, not 'NoneType'"),
        "AttributeError": lambda: AttributeError("'NoneType' object has no attribute 'read'"),
    }


class FailingStream(io.RawIOBase):
    """Serves ``data`` in small reads (like a network stream) and raises ``failure()`` on the first read
    after the first ``after_reads`` that covers byte ``at``; ``failure=None``: a clean stream."""

    def __init__(
        self,
        data: bytes,
        failure: Callable[[], BaseException] | None,
        at: int,
        seekable: bool = False,
        after_reads: int = 0,
    ) -> None:
        self._inner = io.BytesIO(data)
        self._failure = failure
        self._at = at
        self._after_reads = after_reads
        self.reads = 0
        self._seekable = seekable
        self.served = 0
        self.failed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("seek")
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("tell")
        return self._inner.tell()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        start = self._inner.tell()
        size = len(view) if self._seekable else min(len(view), 64 << 10)
        self.reads += 1
        if self._failure is not None and self.reads > self._after_reads and start <= self._at < start + size:
            self.failed = True
            raise self._failure()
        chunk = self._inner.read(size)
        view[: len(chunk)] = chunk
        self.served += len(chunk)
        return len(chunk)


def csv_bytes(rows: int = ROWS) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pylist(good_rows(rows)), sink)
    return sink.getvalue()


def parquet_bytes(rows: int = ROWS) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(good_rows(rows)), sink, row_group_size=2_000)
    return sink.getvalue()


def payload(kind: str) -> bytes:
    return csv_bytes() if kind == "csv" else parquet_bytes()


def failing_mid_read(kind: str, failure: str, seekable: bool) -> FailingStream:
    """A stream of a ``kind`` file that fails with ``failure`` once the file has opened (header or
    Parquet footer read) and some data has been read."""
    data = payload(kind)
    if kind == "parquet" and seekable:
        # The header peek reads the whole (small) file once; then pyarrow reads the footer (the last
        # 64 KiB), then the data pages: byte 4, just after the magic, is in the first of them.
        return FailingStream(data, failures()[failure], 4, seekable, after_reads=1)
    # Past the 1 MiB header peek of a seekable CSV; in the middle of the forward-only reads (or spool).
    return FailingStream(data, failures()[failure], len(data) * 3 // 4, seekable)


def corrupt_finding(report: ValidationReport) -> str:
    assert not report.ok
    found = [f for f in report.findings if f.check == "corrupt_input"]
    assert len(found) == 1, report.summary()
    return found[0].message


@pytest.mark.parametrize("seekable", [False, True], ids=["forward-only", "seekable"])
@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("failure", list(failures()))
def test_a_read_that_fails_mid_stream_raises(kind: str, seekable: bool, failure: str) -> None:
    stream = failing_mid_read(kind, failure, seekable)
    with pytest.raises(type(failures()[failure]())) as raised:
        validate(stream, small_contract(), name=f"landing/fraud/b.{kind}")
    assert stream.failed
    assert stream.served > 0  # the file had opened: this is a failure in the middle of the read
    assert stream.reads > 1
    assert not isinstance(raised.value, tabular_io.CorruptInput)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("failure", ["ServiceResponseError", "BlobChangedError", "ConnectionResetError"])
def test_threads_do_not_change_what_raises(kind: str, threads: int, failure: str) -> None:
    stream = failing_mid_read(kind, failure, seekable=False)
    with pytest.raises(type(failures()[failure]())):
        validate(stream, small_contract(), name=f"b.{kind}", threads=threads)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("failure", ["ServiceResponseError", "BlobMissingError", "TimeoutError", "TypeError"])
def test_a_stream_that_fails_on_its_first_read_raises(kind: str, failure: str) -> None:
    stream = FailingStream(payload(kind), failures()[failure], 0, seekable=False)
    with pytest.raises(type(failures()[failure]())):
        validate(stream, small_contract(), name=f"b.{kind}")
    assert stream.served == 0


def test_the_original_exception_object_is_raised() -> None:
    """Not a copy or a wrapper: the caller sees the storage SDK's own error, with its traceback."""
    error = ServiceResponseError("Connection reset by peer")
    data = csv_bytes()
    stream = FailingStream(data, lambda: error, len(data) // 2, seekable=False)
    with pytest.raises(ServiceResponseError) as raised:
        validate(stream, small_contract())
    assert raised.value is error
    assert raised.value.__traceback__ is not None


def test_a_connection_reset_seen_by_the_parquet_reader_raises() -> None:
    """pyarrow hands a seekable stream's OSError back as the read's error, which the reader wraps as
    corrupt Parquet; a ConnectionError under it is still a failed read, not a corrupt file."""
    stream = failing_mid_read("parquet", "ConnectionResetError", seekable=True)
    with pytest.raises(ConnectionResetError):
        validate(stream, small_contract(), name="b.parquet")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("error", [TypeError, AttributeError, KeyError, AssertionError, ValueError, RuntimeError])
def test_a_bug_while_checking_raises(monkeypatch: pytest.MonkeyPatch, threads: int, error: type[Exception]) -> None:
    """A bug of ours says nothing about the batch: it raises (on a lane too, without hanging)."""
    original = validation._Validator._column

    def broken(self: validation._Validator, name: str, column: pa.Array, offset: int) -> None:
        if name == "n" and offset > 0:
            raise error("boom")
        original(self, name, column, offset)

    monkeypatch.setattr(validation._Validator, "_column", broken)
    monkeypatch.setattr(tabular_io, "CSV_BLOCK_SIZE", 4096)
    with pytest.raises(error, match="boom"):
        validate(io.BytesIO(csv_bytes(2_000)), small_contract(), threads=threads)


def test_a_bug_while_opening_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: validation._Validator, found: list[str], csv_header: bool = False) -> list[str]:
        raise KeyError("y")

    monkeypatch.setattr(validation._Validator, "check_schema", broken)
    with pytest.raises(KeyError):
        validate(io.BytesIO(csv_bytes(10)), small_contract())


def test_out_of_memory_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Running out of memory is the host's problem, not the batch's."""

    def broken(self: validation._Validator, batch: pa.RecordBatch, lanes: Any = None) -> None:
        raise pa.ArrowMemoryError("malloc of size 1073741824 failed")

    monkeypatch.setattr(validation._Validator, "batch", broken)
    with pytest.raises(MemoryError):
        validate(io.BytesIO(csv_bytes(10)), small_contract())


# -- bytes that cannot be parsed are still findings, through the same streams


@pytest.mark.parametrize("seekable", [False, True], ids=["forward-only", "seekable"])
def test_corrupt_csv_bytes_are_a_finding(seekable: bool) -> None:
    data = csv_bytes(2_000)
    latin1 = data[: len(data) // 2] + "r1,1,1,caf\xe9,true,,1\n".encode("latin-1") + data[len(data) // 2 :]
    stream = FailingStream(latin1, None, 0, seekable)
    assert "UTF-8" in corrupt_finding(validate(stream, small_contract(), name="b.csv"))
    junk = bytes(range(256)) * 64
    binary = FailingStream(junk, None, 0, seekable)
    assert "binary" in corrupt_finding(validate(binary, small_contract(), name="b.csv"))


@pytest.mark.parametrize("seekable", [False, True], ids=["forward-only", "seekable"])
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_parquet_is_a_finding(seekable: bool, keep: float) -> None:
    data = parquet_bytes()
    cut = data[: int(len(data) * keep)]
    stream = FailingStream(cut, None, 0, seekable)
    assert "Parquet" in corrupt_finding(validate(stream, small_contract(), name="b.parquet"))


def test_a_corrupt_parquet_page_is_a_finding() -> None:
    data = bytearray(parquet_bytes())
    for i in range(200, 1_200):  # scribble over the first column chunks, keep the footer intact
        data[i] = 0xFF
    report = validate(io.BytesIO(bytes(data)), small_contract(), name="b.parquet")
    assert not report.ok
    assert {f.check for f in report.findings} & {"corrupt_input", "type_mismatch"}


def test_a_header_the_csv_module_refuses_is_a_finding() -> None:
    """csv.Error from our own header parsing (a field over the csv module's limit) is about the bytes."""
    header = b"id,x,n,c,b,ts,y," + b'"' + b"h" * 200_000 + b'"\n'
    report = validate(io.BytesIO(header + b"r1,1,1,a,true,,1,h\n"), small_contract(), name="b.csv")
    message = corrupt_finding(report)
    assert "field larger than field limit" in message
    assert "re-export" in report.findings[0].remediation


def test_a_clean_stream_still_validates() -> None:
    """The wrapper itself is harmless: with no failure the batch passes."""
    for kind in ("csv", "parquet"):
        data = payload(kind)
        report = validate(FailingStream(data, None, 0, False), small_contract())
        assert report.ok, report.summary()
        assert report.rows == ROWS
