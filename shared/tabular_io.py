"""Stream a CSV or Parquet file as Arrow record batches, from a path or any readable binary stream.

- The format comes from the caller, the file name's extension, or the magic bytes (``PAR1``).
- CSV: the header line is read first (so we know which contract columns exist); the rest is cut
  into blocks of whole records (a quoted value may hold a newline) and each block is parsed with
  the contract's types, a few blocks at a time. A block holding a value that does not parse is
  re-read as text and cast per column in ``shared.typecast``, so the bad value is reported with its
  row. Rows with the wrong number of fields are skipped and counted (``malformed_rows``), not fatal.
  An empty field is missing in every column; the other missing tokens (``NA``, ``null``, …) only in a
  column the contract does not read as text (``NA`` is a value of a string or category column).
  Each block also counts the physical lines it spans, so :meth:`TabularSource.line_of` gives the line a
  row starts on, blank lines and values spanning lines included (see :func:`_block_lines`).
- Parquet needs random access to its footer. A path or a seekable stream is read in place; a
  forward-only stream (a blob download) is first spooled to a temporary file, in chunks.
- Anything that cannot be read raises :class:`CorruptInput` with a reason and a fix.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import queue
import shutil
import socket
import ssl
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeAlias, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shared import parquet_size
from shared.typecast import MISSING_TOKENS

_T = TypeVar("_T")
Format = Literal["csv", "parquet"]
Source: TypeAlias = "str | Path | IO[bytes] | pa.Table"
PARQUET_MAGIC = b"PAR1"
#: A stream that failed, not bytes that do not parse: these pass through the reader unchanged (every other error
#: while decoding is CorruptInput). A dropped connection or a timeout says nothing about the data, and a batch judged
#: corrupt is quarantined, out of landing; the caller retries instead.
READ_FAILURES: tuple[type[OSError], ...] = (ConnectionError, TimeoutError, socket.gaierror, ssl.SSLError)
HEADER_PEEK = 1 << 20  # the header line must fit in the first MiB
CSV_BLOCK_SIZE = 4 << 20  # bytes of whole lines parsed at a time (one record batch); a few are in flight
MAX_CSV_RECORD = 64 << 20  # bytes one record (a line, or quoted lines) may take before the input counts as corrupt
CSV_PARSE_THREADS = 2  # blocks parsed at once (at most the usable CPUs)
PARQUET_BATCH_ROWS = 131_072
PARQUET_BATCH_BYTES = 32 << 20  # decoded bytes a Parquet batch may take (fewer rows when rows are wide)
MAX_EXAMPLES = 5
COUNT_SLICE = 1 << 18  # bytes of a block whose line ends are counted at once
#: What a blank line may hold: pandas' C reader (training) skips a line of spaces and tabs as it skips an empty one.
WHITESPACE = " \t\r"
MAX_LINE_STEPS = 1 << 19  # places where a CSV's lines and rows part that are remembered (16 bytes each: 8 MiB)


class CorruptInput(Exception):
    """The input cannot be read as the format it claims to be."""

    def __init__(self, reason: str, remediation: str) -> None:
        self.reason = reason
        self.remediation = remediation
        super().__init__(f"{reason} ({remediation})")


@dataclass
class MalformedRows:
    count: int = 0
    examples: list[tuple[int | None, str]] = field(default_factory=list)


class _CountingReader(io.RawIOBase):
    """Replays the bytes already peeked, then the rest of the stream, counting everything read."""

    def __init__(self, stream: IO[bytes], prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self.bytes_read = len(prefix)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        chunk = self._stream.read(len(view))
        if not chunk:
            return 0
        view[: len(chunk)] = chunk
        self.bytes_read += len(chunk)
        return len(chunk)


class TabularSource:
    """One open input. Iterate :meth:`batches` once; read the counters afterwards."""

    def __init__(self, source: Source, fmt: Format | None = None, name: str | None = None) -> None:
        self._source = source
        self._cleanup = contextlib.ExitStack()
        self.name = name or _source_name(source)
        self.malformed = MalformedRows()
        self.lines = LineMap()
        self._counter: _CountingReader | None = None
        self._size: int | None = None
        self.columns: list[str] = []
        self.format: Format | Literal["table"]
        if isinstance(source, pa.Table):
            self.format = "table"
            self.columns = list(source.column_names)
            return
        prefix = self._peek()
        self.format = fmt or _detect_format(self.name, prefix)
        if self.format == "csv":
            self.columns = _csv_header(prefix, self._size)
        else:
            self._open_parquet()

    # -- lifecycle

    def close(self) -> None:
        self._cleanup.close()

    def __enter__(self) -> TabularSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bytes_read(self) -> int:
        if self._counter is not None:
            return self._counter.bytes_read
        return self._size or 0

    # -- opening

    def _peek(self) -> bytes:
        source = self._source
        if isinstance(source, str | Path):
            path = Path(source)
            try:
                self._size = path.stat().st_size
                with path.open("rb") as handle:
                    return handle.read(HEADER_PEEK)
            except FileNotFoundError:
                raise CorruptInput(f"{path} does not exist", "check the path") from None
            except IsADirectoryError:
                raise CorruptInput(f"{path} is a directory", "pass one CSV or Parquet file") from None
            except OSError as exc:
                raise CorruptInput(f"{path} cannot be read ({exc})", "check the file's permissions") from None
        assert not isinstance(source, pa.Table)
        if _seekable(source):
            start = source.tell()
            prefix = source.read(HEADER_PEEK)
            source.seek(start)
            with contextlib.suppress(OSError, ValueError):
                self._size = source.seek(0, os.SEEK_END) - start
                source.seek(start)
            return prefix
        prefix = source.read(HEADER_PEEK)
        self._counter = _CountingReader(source, prefix)
        return prefix

    def _open_parquet(self) -> None:
        source = self._source
        assert not isinstance(source, pa.Table)
        self._parquet_start = 0
        if isinstance(source, str | Path):
            handle: Any = str(source)
        elif self._counter is not None:
            # Forward-only stream: Parquet's footer is at the end, so spool to disk in 1 MiB chunks.
            spool = self._cleanup.enter_context(tempfile.TemporaryFile(prefix="perennial-", suffix=".parquet"))  # noqa: SIM115
            shutil.copyfileobj(self._counter, spool, 1 << 20)
            spool.seek(0)
            handle = spool
        else:
            handle = source
            self._parquet_start = source.tell()
        self._parquet_handle = handle
        try:
            self._parquet = pq.ParquetFile(handle)
        except READ_FAILURES:
            raise  # the stream failed, not the bytes: the caller retries (see READ_FAILURES)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptInput(
                f"not a readable Parquet file ({_first_line(exc)})",
                "the file is truncated or not Parquet: re-export it, or name it .csv if it is CSV",
            ) from None
        self.columns = list(self._parquet.schema_arrow.names)

    # -- reading

    def batches(
        self, wanted: list[str], types: Mapping[str, pa.DataType] | None = None, threads: int | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of the ``wanted`` columns (those present in the file); raises CorruptInput.

        ``types`` asks for columns to be parsed as that Arrow type where the format allows it:
        CSV parses numbers while it splits fields (4x cheaper than casting strings afterwards) and
        categories as dictionaries; Parquet reads text columns named with a dictionary type as
        dictionaries. A CSV block whose values do not all parse is re-read with every column as
        text, so a bad value still reaches the caller (and its cast) rather than failing the read.
        ``threads``: how many threads may decode at once (default: up to CSV_PARSE_THREADS, or
        Arrow's pool for Parquet; 1 decodes on the calling thread only).
        """
        present = [c for c in wanted if c in self.columns]
        if self.format == "table":
            assert isinstance(self._source, pa.Table)
            yield from self._source.select(present).to_batches(max_chunksize=PARQUET_BATCH_ROWS)
        elif self.format == "parquet":
            yield from self._parquet_batches(present, types or {}, threads != 1)
        else:
            yield from self._csv_batches(present, types or {}, threads or CSV_PARSE_THREADS)

    def _parquet_batches(
        self, present: list[str], types: Mapping[str, pa.DataType], use_threads: bool
    ) -> Iterator[pa.RecordBatch]:
        repeated = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if repeated:
            raise CorruptInput(
                f"the Parquet file names column(s) {repeated} more than once", "write each column once, under one name"
            )
        schema = self._parquet.schema_arrow
        categories = [c for c in present if pa.types.is_dictionary(types.get(c, pa.null()))]
        # Read as dictionaries (and kept so): categories stored as text, or stored as a dictionary of text already.
        dictionary = [c for c in categories if _is_string(schema.field(c).type)]
        kept = {c for c in categories if c in dictionary or _is_string_dictionary(schema.field(c).type)}
        try:
            rows, most = self._parquet_batch_rows(present, kept)
            parquet = self._parquet_reading(dictionary) if dictionary else self._parquet
            decoded = 0
            for batch in parquet.iter_batches(batch_size=rows, columns=present, use_threads=use_threads):
                # What the batches really take, against the same limit: no encoding, nor a footer that
                # understates its pages, gets past it by more than a batch.
                decoded += parquet_size.batch_bytes(batch)
                if decoded > most:
                    raise self._too_large(decoded, "counted as it was read", counted=True)
                yield batch
        except READ_FAILURES:
            raise  # the stream failed, not the bytes: the caller retries (see READ_FAILURES)
        except parquet_size.NotFlat as exc:
            raise CorruptInput(str(exc), "write the column as flat values: one number or text per row") from None
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptInput(
                f"the Parquet data is corrupt ({_first_line(exc)})", "re-export the file; it may be truncated"
            ) from None

    def _parquet_reading(self, dictionary: list[str]) -> pq.ParquetFile:
        """The file opened again, reading the ``dictionary`` columns as dictionaries."""
        if not isinstance(self._parquet_handle, str):
            self._parquet_handle.seek(self._parquet_start)
        return pq.ParquetFile(self._parquet_handle, read_dictionary=dictionary)

    def _parquet_probing(self, dictionary: list[str]) -> pq.ParquetFile:
        """The file opened again to decode one row of a row group (its dictionaries): reads no more than it needs."""
        if not isinstance(self._parquet_handle, str):
            self._parquet_handle.seek(self._parquet_start)
        return pq.ParquetFile(self._parquet_handle, read_dictionary=dictionary, pre_buffer=False, buffer_size=1 << 16)

    def _parquet_batch_rows(self, present: list[str], dictionaries: set[str]) -> tuple[int, int]:
        """(rows per batch, so a batch decodes to about PARQUET_BATCH_BYTES; the most the file may decode to, which
        the batches are counted against). ``dictionaries``: the columns read and kept as dictionaries, the
        categories. Refuses (CorruptInput) a file that would decode to more than ``parquet_size.max_decoded`` of its
        size before decoding any of it."""
        most = parquet_size.max_decoded(self.bytes_read)
        stored = parquet_size.footer_size(self._parquet, present)
        if stored > most:  # the pages alone (decompressed) are too large: no dictionary needs reading to know it
            raise self._too_large(stored, f"its pages hold {human_bytes(stored)} once decompressed")
        size = parquet_size.decoded_size(self._parquet, present, dictionaries, self._parquet_probing)
        if size.bytes > most:
            largest = size.largest
            raise self._too_large(size.bytes, largest.why if largest else "its columns")
        rows = parquet_size.batch_rows(size, PARQUET_BATCH_BYTES, PARQUET_BATCH_ROWS)
        return rows, parquet_size.max_decoded(self.bytes_read, unbounded=bool(size.unbounded))

    def _too_large(self, decoded: int, why: str, counted: bool = False) -> CorruptInput:
        size = self.bytes_read
        verb = "decoded to more than" if counted else "would decode to"
        return CorruptInput(
            f"the Parquet file {verb} {human_bytes(decoded)} from {human_bytes(size)} "
            f"({decoded / max(size, 1):,.0f} times its size; {why})",
            f"a file may decode to at most {parquet_size.MAX_EXPANSION} times its size past "
            f"{human_bytes(parquet_size.DECODED_FLOOR)}: split it into smaller files, or find why its writer repeats "
            "so much",
        )

    def _csv_batches(
        self, present: list[str], types: Mapping[str, pa.DataType], threads: int
    ) -> Iterator[pa.RecordBatch]:
        if not present:
            return
        # A contract column named twice: which copy is the column? (Other repeats, such as the empty names of a
        # header's trailing commas, are columns nobody reads.) As for Parquet, the file is refused.
        repeated = sorted({c for c in present if self.columns.count(c) > 1})
        if repeated:
            raise CorruptInput(
                f"the CSV header names column(s) {repeated} more than once", "write each column once, under one name"
            )
        source = self._source
        handle: Any
        if isinstance(source, str | Path):
            try:
                handle = self._cleanup.enter_context(Path(source).open("rb", buffering=0))  # noqa: SIM115
            except OSError as exc:
                raise CorruptInput(f"{source} cannot be read ({exc})", "check the file's permissions") from None
        elif self._counter is not None:
            handle = self._counter
        else:
            handle = source
        text = {c: pa.string() for c in present}
        typed = {c: types.get(c, pa.string()) for c in present}
        threads = max(1, min(threads, usable_cpus()))
        rows_before = 0  # rows (malformed included, blank lines not) before the block: for row numbers
        try:
            # Blocks are parsed in parallel (Arrow releases the GIL) and taken in order; at most
            # ``threads + 1`` are in flight, so memory stays bounded. One thread: inline.
            with ThreadPoolExecutor(threads, thread_name_prefix="perennial-csv") if threads > 1 else _inline() as pool:
                parsing: deque[Future[_ParsedBlock]] = deque()
                blocks = _csv_blocks(handle)
                header = next(blocks, None)
                line = 1 + (0 if header is None else _block_lines(header, 1).lines)  # where the next block starts
                while True:
                    while len(parsing) <= threads and (block := next(blocks, None)) is not None:
                        parsing.append(pool.submit(self._parse_csv_block, block, present, typed, text))
                    if not parsing:
                        break
                    parsed = parsing.popleft().result()
                    self.malformed.count += parsed.skipped
                    room = MAX_EXAMPLES - len(self.malformed.examples)
                    if room > 0:
                        self.malformed.examples += [
                            (None if n is None else rows_before + n - 1, body) for n, body in parsed.bad[:room]
                        ]
                    self.lines.add(rows_before, parsed.rows, line, parsed.lines)
                    rows_before += parsed.rows
                    line += parsed.lines.lines
                    if parsed.batch is not None:
                        yield parsed.batch
        except READ_FAILURES:
            raise  # the stream failed, not the bytes: the caller retries (see READ_FAILURES)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise _csv_error(exc) from None

    def _parse_csv_block(
        self,
        block: bytes,
        present: list[str],
        typed: Mapping[str, pa.DataType],
        text: Mapping[str, pa.DataType],
    ) -> _ParsedBlock:
        """Parse whole CSV lines (typed; all as text if a value does not parse)."""
        bad: list[tuple[int | None, str]] = []  # the first few malformed rows (1-based within the block)
        skipped = [0]
        blank = [0]  # lines of spaces or tabs so far, which Arrow numbers as rows

        def on_bad_row(row: Any) -> str:
            if not row.text.strip(WHITESPACE):
                blank[0] += 1  # blank, as pandas (training) reads it: not a row, and not malformed
                return "skip"
            skipped[0] += 1
            if len(bad) < MAX_EXAMPLES:
                body = row.text if len(row.text) <= 200 else row.text[:200] + "…"
                number = row.number - blank[0] if row.number is not None and row.number >= 1 else None
                bad.append((number, f"{row.actual_columns} fields: {body}"))
            return "skip"

        def parse(column_types: Mapping[str, pa.DataType]) -> pa.Table:
            bad.clear()
            skipped[0] = blank[0] = 0
            return pacsv.read_csv(
                pa.py_buffer(block),
                read_options=pacsv.ReadOptions(column_names=self.columns, block_size=len(block) + 1, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_bad_row, newlines_in_values=False),
                # Numbers read the missing tokens (NA, null, NaN, …) as missing; text is read as written, so "NA"
                # in a string or category column is the value NA, as in Parquet and at scoring (empty: below).
                convert_options=pacsv.ConvertOptions(
                    include_columns=present,
                    column_types=column_types,
                    null_values=MISSING_TOKENS,
                    strings_can_be_null=False,
                ),
            )

        if typed != text and ((b"x" in block and b"0x" in block) or (b"X" in block and b"0X" in block)):
            # Arrow's CSV reader reads "0x17" in an int column as 23 (pandas, in training: missing): ints that may be
            # written so arrive as text, where the cast refuses hexadecimal (shared.typecast).
            typed = {name: text.get(name, kind) if pa.types.is_integer(kind) else kind for name, kind in typed.items()}
        try:
            table = parse(typed)
        except pa.ArrowInvalid:
            if typed == text:
                raise
            table = parse(text)  # a value that is not its type: the caller's cast reports it by row
        batch = _empty_as_missing(table.combine_chunks().to_batches()[0]) if table.num_rows else None
        rows = table.num_rows + skipped[0]
        return _ParsedBlock(batch, rows, skipped[0], bad, _block_lines(block, rows))

    def line_of(self, row: int) -> int | None:
        """The line of the CSV file (the header is line 1) data row ``row`` (from 0, malformed rows
        included) starts on; None when not known. Complete once :meth:`batches` has been read."""
        return self.lines.line_of(row)


def _empty_as_missing(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The CSV batch with each text column's empty fields (``,,`` or ``""``) missing: in CSV the empty field is
    how a missing value is written, in any column. Other missing tokens ("NA", "null") are left to the column's
    type: the value NA of a string or category column, missing in a bool or timestamp one (shared.typecast)."""
    columns = batch.columns
    changed = False
    for i, column in enumerate(columns):
        nulled = _text_empty_as_null(column)
        if nulled is not column:
            columns[i], changed = nulled, True
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema) if changed else batch


def _text_empty_as_null(column: pa.Array) -> pa.Array:
    # Arrow's CSV reader gives string (int32 offsets) values only; _empty_strings reads int32 offsets.
    if _is_string_dictionary(column.type) and column.type.value_type == pa.string():
        dictionary = column.dictionary
        codes = np.flatnonzero(_empty_strings(dictionary))  # the code of "" (Arrow's CSV dictionaries hold it once)
        if not len(codes):
            return column
        indices = column.indices
        missing = pc.is_in(indices, value_set=pa.array(codes, indices.type))
        return pa.DictionaryArray.from_arrays(pc.if_else(missing, pa.scalar(None, indices.type), indices), dictionary)
    if not pa.types.is_string(column.type):
        return column
    empty = _empty_strings(column)
    if not empty.any():
        return column
    return pc.if_else(pa.array(empty), pa.scalar(None, pa.string()), column)


def _empty_strings(values: pa.Array) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which values of a string array are "" (from the offsets buffer, without touching the text)."""
    buffer = values.buffers()[1]
    if buffer is None or not len(values):
        return np.zeros(len(values), np.bool_)
    offsets = np.frombuffer(buffer, np.int32, count=len(values) + 1, offset=values.offset * 4)
    empty: np.ndarray[Any, np.dtype[np.bool_]] = offsets[1:] == offsets[:-1]
    if values.null_count:
        empty &= values.is_valid().to_numpy(zero_copy_only=False)
    return empty


class _Inline:
    """An executor that runs each task at once on the calling thread."""

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        future: Future[_T] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)
        return future


@contextlib.contextmanager
def _inline() -> Iterator[_Inline]:
    yield _Inline()


@dataclass
class _ParsedBlock:
    batch: pa.RecordBatch | None  # None when the block held no good row
    rows: int  # rows in the block, malformed ones included (blank lines are not rows)
    skipped: int  # malformed rows
    bad: list[tuple[int | None, str]]  # the first few malformed rows: (1-based row in the block, text)
    lines: _BlockLines  # the physical lines the block spans, and where its rows start


@dataclass
class _BlockLines:
    lines: int  # physical lines the block spans (line ends, plus a last line that has none)
    starts: np.ndarray[Any, np.dtype[np.int64]] | None  # the line (from 0) each row starts on; None: the row number
    known: bool = True  # False: the rows' lines cannot be told apart (their total still is ``lines``)


def _block_lines(block: bytes, rows: int) -> _BlockLines:
    """The physical lines ``block`` (whole CSV records, parsed by Arrow into ``rows`` rows) spans, and
    the line each row starts on when that is not simply its row number.

    A line ends at \\n, \\r\\n or a lone \\r (as in Arrow and editors). Each row takes at least one
    line, so a block with as many lines as rows has one line per row: the common case, settled by
    counting (under 1 ms per 4 MiB, 2 ms with \\r\\n line ends, in numpy slices without the GIL). Otherwise (blank lines, which are not
    rows, or a quoted value spanning lines) the records are found as the block cut finds them: a
    line end ends a record when an even number of double quotes comes before it. That holds when each
    quote opens a value (after a comma or a record's end), closes one (before a comma or a line end)
    or is half of an escaped pair; a block with any other quote gets ``known=False``, as does one
    whose records do not number ``rows``: its rows' lines are not guessed.
    """
    if not block:
        return _BlockLines(0, None)
    data = np.frombuffer(block, np.uint8)
    cr = b"\r" in block
    # A last line without an end counts, and so does a final \r (which the slices leave out: no byte after it).
    lines = 0 if block.endswith(b"\n") else 1
    for i in range(0, len(data), COUNT_SLICE):  # a slice at a time: no block-sized temporary array
        part = data[i : i + COUNT_SLICE]
        lines += int(np.count_nonzero(part == 10))
        if cr:  # a lone \r ends a line too; in \r\n only the \n counts
            after = data[i + 1 : i + 1 + len(part)]
            lines += int(np.count_nonzero((part[: len(after)] == 13) & (after != 10)))
    if lines == rows:
        return _BlockLines(lines, None)
    ends = data == 10
    if cr:
        ends[:-1] |= (data[:-1] == 13) & (data[1:] != 10)
        ends[-1:] |= data[-1:] == 13
    unknown = _BlockLines(lines, None, known=False)
    positions = np.flatnonzero(ends)  # line ends; the i-th ends line i (from 0)
    record_end = np.ones(len(positions), bool)
    if b'"' in block:
        quotes = np.flatnonzero(data == 34)
        prev = data[np.maximum(quotes - 1, 0)]
        nxt = data[np.minimum(quotes + 1, len(data) - 1)]
        # An even quote (from 0) opens a value, or is the second of an escaped pair: the odd one before
        # it was followed by a quote. An odd one closes the value, or starts an escaped pair.
        opening = (quotes == 0) | np.isin(prev, (44, 10, 13, 34))
        closing = (quotes == len(data) - 1) | np.isin(nxt, (44, 10, 13, 34))
        if not (opening[0::2].all() and closing[1::2].all()):
            return unknown
        record_end = np.searchsorted(quotes, positions) % 2 == 0
    end_lines = np.flatnonzero(record_end)  # the line each record ends on
    end_at = positions[record_end]
    start_lines = np.concatenate(([0], end_lines + 1))
    start_at = np.concatenate(([0], end_at + 1))
    # A record of nothing but spaces and tabs is blank (on_bad_row skips it), as is an empty one. Each is reduced
    # with the line end after it (the next record's start), which is blank too; text after the last line end is a
    # row unless it is blank.
    blankish = (data == 32) | (data == 9) | (data == 13) | (data == 10)
    blank = np.ones(len(start_at), bool)
    inside = start_at < len(data)
    blank[inside] = np.logical_and.reduceat(blankish, start_at[inside])
    starts = start_lines[~blank]
    return _BlockLines(lines, starts.astype(np.int64)) if len(starts) == rows else unknown


class LineMap:
    """The line (from 1) each CSV data row starts on, kept as the rows where ``line - row`` changes.

    One step per block that follows blank lines or a value spanning lines (none for a file with one
    line per row), plus one per such row inside a block; after MAX_LINE_STEPS steps, or for a block
    whose rows cannot be placed, the lines are unknown (None) rather than guessed.
    """

    def __init__(self) -> None:
        self._rows: list[np.ndarray[Any, np.dtype[np.int64]]] = []  # the first row of each step
        self._shifts: list[np.ndarray[Any, np.dtype[np.int64]]] = []  # line - row from there (-1: unknown)
        self._steps = 0
        self._shift = -2  # the shift of the rows added last (-2: none yet)
        self._known_rows = 0  # rows [0, _known_rows) were added

    def add(self, first_row: int, rows: int, first_line: int, block: _BlockLines) -> None:
        """Add a block's ``rows`` rows: the first is row ``first_row``, the block starts on ``first_line``."""
        if self._known_rows != first_row or rows == 0:  # stopped (too many steps), or nothing to add
            return
        if not block.known:
            at, shifts = np.array([first_row]), np.array([-1])
        elif block.starts is None:
            at, shifts = np.array([first_row]), np.array([first_line - first_row])
        else:
            shift = first_line + block.starts - np.arange(first_row, first_row + len(block.starts))
            change = np.flatnonzero(np.diff(shift)) + 1
            at, shifts = first_row + np.concatenate(([0], change)), shift[np.concatenate(([0], change))]
        if shifts[0] == self._shift:
            at, shifts = at[1:], shifts[1:]
        if self._steps + len(at) > MAX_LINE_STEPS:
            return
        self._rows.append(at.astype(np.int64))
        self._shifts.append(shifts.astype(np.int64))
        self._steps += len(at)
        if len(shifts):
            self._shift = int(shifts[-1])
        self._known_rows = first_row + rows

    def line_of(self, row: int) -> int | None:
        """The line data row ``row`` (from 0, malformed rows included) starts on; None if not known."""
        if not 0 <= row < self._known_rows:
            return None
        if len(self._rows) > 1:  # join the steps once, on the first look-up
            self._rows, self._shifts = [np.concatenate(self._rows)], [np.concatenate(self._shifts)]
        step = int(np.searchsorted(self._rows[0], row, side="right")) - 1
        shift = int(self._shifts[0][step])
        return None if shift < 0 else row + shift


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _csv_blocks(handle: Any) -> Iterator[bytes]:
    """The header record of a CSV stream, then its data lines in blocks of whole records.

    Blocks are about CSV_BLOCK_SIZE; a longer record makes its block longer, up to MAX_CSV_RECORD. A block
    ends at a newline outside double quotes, so a quoted value holding a newline stays in one block
    (Arrow parses it there) wherever the block boundary would have fallen.
    """
    pending = b""
    header = True
    while True:
        chunk = _read_up_to(handle, CSV_BLOCK_SIZE)
        if not chunk:
            break
        data = pending + chunk if pending else chunk
        if header:
            end = _first_record_end(data)
            if end < 0:
                pending = _bounded(data)
                continue
            yield data[: end + 1]
            data, header = data[end + 1 :], False
        cut = _last_record_end(data)
        if cut < 0:
            pending = _bounded(data)
            continue
        pending = data[cut + 1 :]
        yield data[: cut + 1]
    if not header and pending.strip():
        yield pending


def _first_record_end(data: bytes) -> int:
    """The index of the first newline outside double quotes in ``data``, which starts at a record's start;
    -1 if there is none. An escaped quote ("") keeps the count even."""
    quotes, start = 0, 0
    while (pos := data.find(b"\n", start)) >= 0:
        quotes += data.count(b'"', start, pos)
        if quotes % 2 == 0:
            return pos
        start = pos + 1
    return -1


def _last_record_end(data: bytes) -> int:
    """The index of the last newline outside double quotes in ``data``, which starts at a record's start;
    -1 if there is none. Counted from the end: the quotes before a newline are the block's minus those after."""
    quotes, end = data.count(b'"'), len(data)
    pos = data.rfind(b"\n")
    while pos >= 0:
        quotes -= data.count(b'"', pos, end)  # now the quotes before ``pos``
        if quotes % 2 == 0:
            return pos
        end = pos
        pos = data.rfind(b"\n", 0, pos)
    return -1


def _bounded(pending: bytes) -> bytes:
    if len(pending) > MAX_CSV_RECORD:
        raise CorruptInput(
            f"a record is longer than {MAX_CSV_RECORD >> 20} MiB (no line end, or a double quote that is never closed)",
            "check the file is CSV with one record per line and balanced double quotes, or re-export it",
        )
    return pending


def _read_up_to(handle: Any, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at the end of the stream (network streams return short reads)."""
    parts: list[bytes] = []
    wanted = size
    while wanted > 0:
        chunk = handle.read(wanted)
        if not chunk:
            break
        parts.append(bytes(chunk))
        wanted -= len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _csv_error(exc: Exception) -> CorruptInput:
    message = _first_line(exc)
    if "UTF8" in message or "UTF-8" in message or "utf8" in message:
        return CorruptInput(
            f"the CSV is not valid UTF-8 text ({message})",
            "re-export the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        )
    if "Empty CSV" in message:
        return CorruptInput(
            "the file is empty", "write or upload the batch again; an empty file is often a failed copy"
        )
    return CorruptInput(
        f"the CSV cannot be parsed ({message})",
        "check the quoting and delimiters (comma-separated, double quotes), or re-export the file",
    )


def _csv_header(prefix: bytes, size: int | None) -> list[str]:
    if not prefix:
        raise CorruptInput("the file is empty", "write or upload the batch again; an empty file is often a failed copy")
    if prefix.startswith(PARQUET_MAGIC):  # the name says CSV, and a name's suffix decides (as in training_jobs)
        raise CorruptInput(
            "the file is Parquet (it starts with PAR1) but its name says CSV",
            "rename it to .parquet and upload it again",
        )
    if prefix.startswith((b"\xff\xfe", b"\xfe\xff")) and b"\x00" in prefix[:4096]:
        raise CorruptInput(
            "the file is UTF-16 text (Excel's 'Unicode Text', or a PowerShell redirect), not UTF-8",
            "save it as 'CSV UTF-8' (or convert it: iconv -f UTF-16 -t UTF-8 in.csv > out.csv) and upload it again",
        )
    if b"\x00" in prefix[:4096]:
        raise CorruptInput(
            "the file is binary, not CSV text", "upload a CSV or Parquet file (Parquet files start with PAR1)"
        )
    end = prefix.find(b"\n")
    lone_cr = prefix.find(b"\r")
    if 0 <= lone_cr < (end if end >= 0 else len(prefix)) and prefix[lone_cr + 1 : lone_cr + 2] != b"\n":
        # Records are cut at \n: a file whose header ends with a lone \r (classic Mac) would read as one line.
        raise CorruptInput(
            "the header line ends with a lone carriage return (old Mac line ends); records must end with \\n or \\r\\n",
            "convert the line ends and upload again, e.g. tr '\\r' '\\n' < in.csv > out.csv",
        )
    if end < 0 and (size is None or size > len(prefix)):
        raise CorruptInput("no header line in the first MiB", "the first line must name the columns")
    line = prefix if end < 0 else prefix[:end]
    line = line.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r")  # Excel writes a UTF-8 byte-order mark
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptInput(
            f"the header is not valid UTF-8 ({exc.reason} at byte {exc.start})",
            "re-export the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None
    names = next(csv.reader([text]), [])
    if not names or not any(n.strip() for n in names):
        raise CorruptInput("the header line is empty", "the first line must name the columns")
    return names


def _detect_format(name: str, prefix: bytes) -> Format:
    lower = name.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".csv", ".txt")):
        return "csv"
    return "parquet" if prefix.startswith(PARQUET_MAGIC) else "csv"


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError, OSError):
        return False


def _source_name(source: Source) -> str:
    if isinstance(source, pa.Table):
        return "<table>"
    if isinstance(source, str | Path):
        return str(source)
    return str(getattr(source, "name", None) or "<stream>")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


_DONE = object()


def prefetch(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Read the next record batches on a background thread while the caller checks this one.

    Arrow parses and decompresses without the GIL, so on a 2-core Function host reading and
    checking overlap. At most ``depth`` batches wait in the queue (bounded memory); an error in
    the reader is re-raised in the caller, and the reader stops if the caller stops early.
    """
    out: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        out.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item: object = _DONE
        except BaseException as exc:  # handed to the consumer, which re-raises it
            item = exc
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    worker = threading.Thread(target=produce, name="perennial-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def _is_string(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _is_string_dictionary(kind: pa.DataType) -> bool:
    return bool(pa.types.is_dictionary(kind) and _is_string(kind.value_type))


def human_bytes(n: int) -> str:
    """``n`` bytes as a person reads them: 512 B, 8.6 KB, 2.3 GB."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
