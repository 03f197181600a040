"""How large a Parquet file's columns become once decoded, known from its footer and dictionaries before any row is.

Parquet may store a value once in a column's dictionary and repeat it on every row for a bit or two, and a page of
repeats compresses to almost nothing: a file of kilobytes can decode to gigabytes (a security review found an 8.6 KB
file that took 2.2 GB and 21 s to validate, and passed). ``tabular_io`` asks this module for an upper bound of what
the columns it reads will take, refuses a file that would expand past ``max_decoded`` and sizes its batches by bytes,
so neither memory nor time follows a value repeated through a dictionary.

The bound reads the footer's sizes (what each column chunk's pages hold once decompressed) and the longest value of
each dictionary a text column is read through (one row per row group is decoded for it). Two things the footer cannot
bound: a text chunk with ``DELTA_BYTE_ARRAY`` pages (each value may repeat the previous one's prefix for free) is
read in small batches, ``UNBOUNDED_BATCH_ROWS``, and ``tabular_io`` also counts the bytes every batch really takes
against the same limit, so no encoding, and no footer forged to understate its pages, gets past it by more than a
batch. Nested columns (a list or a struct where the contract has one value per row) are refused before reading.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: A file may always decode to this much (in bounded batches, about a minute of checks at worst)...
DECODED_FLOOR = 1 << 30
#: ... and to this many times its size past that. Categories are read as dictionaries and do not count their
#: repeats; what legitimately expands (numbers of few distinct values, empty columns) stays far below it.
MAX_EXPANSION = 100
#: Rows per batch when a column's pages cannot bound its values (DELTA_BYTE_ARRAY text).
UNBOUNDED_BATCH_ROWS = 8192
#: Text encodings whose values the pages hold whole (once, or once in a dictionary).
_SIZED_BY_PAGES = frozenset(
    {"PLAIN", "PLAIN_DICTIONARY", "RLE_DICTIONARY", "RLE", "BIT_PACKED", "DELTA_LENGTH_BYTE_ARRAY"}
)


class NotFlat(ValueError):
    """A column read holds nested values (a list, a struct, a map): a contract column holds one value per row."""


@dataclass(frozen=True)
class ColumnSize:
    """One column's decoded bytes (at most), over the whole file, and what makes it that large."""

    column: str
    bytes: int
    why: str


@dataclass(frozen=True)
class DecodedSize:
    """An upper bound of the decoded size of the columns read, the widest row of any row group (what a batch of
    rows costs), and whether some column's values the footer cannot bound (read in small batches)."""

    bytes: int
    widest_row: float
    columns: tuple[ColumnSize, ...]
    unbounded: tuple[str, ...] = ()

    @property
    def largest(self) -> ColumnSize | None:
        return max(self.columns, key=lambda c: c.bytes, default=None)


#: The floor for a file with such columns: only what is decoded can be counted, and the checks of very wide text
#: values take several times their bytes in memory, so less is let through before the count stops the read.
UNBOUNDED_FLOOR = 256 << 20


def max_decoded(file_bytes: int, unbounded: bool = False) -> int:
    """The most a file of ``file_bytes`` may decode to (``unbounded``: some column's values its footer cannot bound)."""
    return max(UNBOUNDED_FLOOR if unbounded else DECODED_FLOOR, MAX_EXPANSION * file_bytes)


def column_chunks(parquet: pq.ParquetFile) -> list[str]:
    """The top-level column each column chunk of a row group belongs to, by position: a name may hold dots, so
    the chunk's dotted path cannot tell; the Arrow schema's leaves, in order, can."""
    owners: list[str] = []
    for field in parquet.schema_arrow:
        owners += [field.name] * _leaves(field.type)
    return owners


def footer_size(parquet: pq.ParquetFile, columns: Sequence[str]) -> int:
    """What the ``columns``' pages hold once decompressed, by the footer (before any dictionary is looked at)."""
    wanted, owners, meta = set(columns), column_chunks(parquet), parquet.metadata
    total = 0
    for r in range(meta.num_row_groups):
        group = meta.row_group(r)
        for j in range(min(group.num_columns, len(owners))):
            if owners[j] in wanted:
                total += group.column(j).total_uncompressed_size
    return total


def decoded_size(
    parquet: pq.ParquetFile,
    columns: Sequence[str],
    as_dictionary: Collection[str],
    open_with_dictionaries: Callable[[list[str]], pq.ParquetFile],
) -> DecodedSize:
    """At most how many bytes ``columns`` take once decoded as Arrow arrays (``as_dictionary``: read and kept as
    dictionaries; every other text column becomes plain strings, whatever the file's schema says). Raises NotFlat
    for a nested column.

    ``open_with_dictionaries(names)`` opens the same file reading ``names`` as dictionaries: a text column's
    dictionary is decoded (one row per row group) to learn its longest value."""
    schema, meta, owners = parquet.schema_arrow, parquet.metadata, column_chunks(parquet)
    types: dict[str, pa.DataType] = {}
    for c in columns:
        kind = schema.field(c).type
        if _leaves(kind) != 1 or pa.types.is_nested(_stored_type(kind)):
            raise NotFlat(f"column {c!r} holds {kind} values, not one value per row")
        # A column pyarrow wrote as a dictionary (its schema kept in the file) is read back as one, but is only as
        # small as its pages if it stays one: the validator casts a text column that is not a category to text.
        types[c] = _stored_type(kind)
    through_dictionary = [c for c in columns if _is_text(types[c]) and c not in as_dictionary]
    per_column = dict.fromkeys(columns, 0)
    longest: dict[str, int] = dict.fromkeys(columns, 0)
    unbounded: set[str] = set()
    widest_row = 0.0
    probe: pq.ParquetFile | None = None
    for r in range(meta.num_row_groups):
        group = meta.row_group(r)
        chunks = {owners[j]: group.column(j) for j in range(min(group.num_columns, len(owners)))}
        dictionary_coded = [c for c in through_dictionary if c in chunks and chunks[c].has_dictionary_page]
        widths: dict[str, int] = {}
        if dictionary_coded and group.num_rows:
            probe = probe or open_with_dictionaries(through_dictionary)
            widths = _longest_values(probe, r, dictionary_coded)
        row_bytes = 0.0
        for c in columns:
            chunk = chunks.get(c)
            pages = chunk.total_uncompressed_size if chunk is not None else 0
            rows = chunk.num_values if chunk is not None else group.num_rows
            if chunk is not None and c in through_dictionary and not set(chunk.encodings) <= _SIZED_BY_PAGES:
                unbounded.add(c)
            total, per_row = _column_bytes(types[c], rows, pages, c in as_dictionary, widths.get(c, 0))
            per_column[c] += total
            longest[c] = max(longest[c], widths.get(c, 0))
            row_bytes += per_row
        if group.num_rows:
            widest_row = max(widest_row, row_bytes)
    sizes = tuple(ColumnSize(c, per_column[c], _why(c, longest[c])) for c in columns)
    return DecodedSize(
        bytes=sum(per_column.values()), widest_row=widest_row, columns=sizes, unbounded=tuple(sorted(unbounded))
    )


def batch_rows(size: DecodedSize, target_bytes: int, most: int) -> int:
    """Rows per batch so that a batch of the widest row group takes about ``target_bytes`` (1 to ``most``), and at
    most UNBOUNDED_BATCH_ROWS when some column's values the footer cannot bound."""
    most = min(most, UNBOUNDED_BATCH_ROWS) if size.unbounded else most
    if size.widest_row <= 0:
        return most
    return max(1, min(most, int(target_bytes / size.widest_row)))


def batch_bytes(batch: pa.RecordBatch) -> int:
    """What a decoded batch takes, each dictionary counted with it: the checks go over a batch's dictionary too."""
    return int(batch.nbytes)


def _leaves(kind: pa.DataType) -> int:
    """How many column chunks (Parquet leaves) a field of this Arrow type has."""
    if pa.types.is_dictionary(kind):
        return 1
    if pa.types.is_struct(kind):
        return sum(_leaves(kind.field(i).type) for i in range(kind.num_fields)) or 1
    if pa.types.is_map(kind):
        return _leaves(kind.key_type) + _leaves(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaves(kind.value_type)
    return 1


def _stored_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _column_bytes(kind: pa.DataType, rows: int, pages: int, as_dictionary: bool, longest: int) -> tuple[int, float]:
    """(bytes over the chunk, bytes a row adds to a batch) of one column chunk."""
    validity = rows // 8 + 1
    if _is_text(kind):
        offset = 8 if pa.types.is_large_string(kind) or pa.types.is_large_binary(kind) else 4
        if as_dictionary:  # indices, and the distinct values once (the pages hold them at most once)
            return pages + 4 * rows + validity, 4.125
        # Values stored as they are (pages), and every row at most the longest value of the dictionary (if any).
        total = pages + offset * rows + rows * longest + validity
        return total, total / max(rows, 1)
    try:
        bits = int(kind.bit_width)
    except ValueError:  # variable width other than text: what the pages hold, and a word per row
        total = pages + 8 * rows + validity
        return total, total / max(rows, 1)
    return (rows * bits + 7) // 8 + validity, bits / 8 + 0.125


def _longest_values(probe: pq.ParquetFile, row_group: int, columns: list[str]) -> dict[str, int]:
    """The longest dictionary value of each of ``columns`` in ``row_group``: decoding one row decodes the
    dictionary page whole (a chunk has one; the values of plain pages after a fallback are counted by their pages)."""
    batch = next(probe.iter_batches(batch_size=1, row_groups=[row_group], columns=columns, use_threads=False))
    widths: dict[str, int] = {}
    for c in columns:
        values = batch.column(c)
        dictionary = values.dictionary if isinstance(values, pa.DictionaryArray) else values
        longest = pc.max(pc.binary_length(dictionary)).as_py() if len(dictionary) else 0
        widths[c] = int(longest or 0)
    return widths


def _why(column: str, longest: int) -> str:
    if longest:
        return f"column {column!r} repeats values of up to {longest:,} bytes through its dictionary"
    return f"column {column!r}"
