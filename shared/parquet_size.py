"""How large a Parquet file's columns become once decoded, known from its footer and dictionaries before any row is.

Parquet may store a value once in a column's dictionary and repeat it on every row for a bit or two, and a page of
repeats compresses to almost nothing: a file of kilobytes can decode to gigabytes (a security review found an 8.6 KB
file that took 2.2 GB and 21 s to validate, and passed). ``tabular_io`` asks this module for an upper bound of what
the columns it reads will take, refuses a file that would expand past ``max_decoded`` and sizes its batches by bytes,
so neither memory nor time follows a value repeated through a dictionary.

The bound reads the footer's sizes (what each column chunk's pages hold once decompressed) and the longest value of
each dictionary a text column is read through (one row per row group is decoded for it). It trusts the footer: a
footer forged to understate its pages' sizes is beyond it (docs/architecture.md, Known gaps).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: A file may always decode to this much (a batch of 1 GiB in bounded batches takes seconds to check)...
DECODED_FLOOR = 1 << 30
#: ... and to this many times its size past that. Categories are read as dictionaries and do not expand; what
#: legitimately expands (numbers of few distinct values, empty columns) stays far below it.
MAX_EXPANSION = 100


@dataclass(frozen=True)
class ColumnSize:
    """One column's decoded bytes (at most), over the whole file, and what makes it that large."""

    column: str
    bytes: int
    why: str


@dataclass(frozen=True)
class DecodedSize:
    """An upper bound of the decoded size of the columns read, and the widest row of any row group."""

    bytes: int
    widest_row: float
    columns: tuple[ColumnSize, ...]

    @property
    def largest(self) -> ColumnSize | None:
        return max(self.columns, key=lambda c: c.bytes, default=None)


def max_decoded(file_bytes: int) -> int:
    """The most a file of ``file_bytes`` may decode to."""
    return max(DECODED_FLOOR, MAX_EXPANSION * file_bytes)


def footer_size(parquet: pq.ParquetFile, columns: Sequence[str]) -> int:
    """What the ``columns``' pages hold once decompressed, by the footer (before any dictionary is looked at)."""
    wanted = set(columns)
    meta = parquet.metadata
    total = 0
    for r in range(meta.num_row_groups):
        group = meta.row_group(r)
        for j in range(group.num_columns):
            chunk = group.column(j)
            if chunk.path_in_schema.split(".", 1)[0] in wanted:
                total += chunk.total_uncompressed_size
    return total


def decoded_size(
    parquet: pq.ParquetFile,
    columns: Sequence[str],
    as_dictionary: Collection[str],
    open_with_dictionaries: Callable[[list[str]], pq.ParquetFile],
) -> DecodedSize:
    """At most how many bytes ``columns`` take once decoded as Arrow arrays (``as_dictionary``: read and kept as
    dictionaries; every other text column becomes plain strings, whatever the file's schema says).

    ``open_with_dictionaries(names)`` opens the same file reading ``names`` as dictionaries: a text column's
    dictionary is decoded (one row per row group) to learn its longest value."""
    schema = parquet.schema_arrow
    meta = parquet.metadata
    # A column pyarrow wrote as a dictionary (its schema kept in the file) is read back as one, but is only as small
    # as its pages if it stays one: the validator casts a text column that is not a category to plain strings.
    types = {c: _stored_type(schema.field(c).type) for c in columns}
    through_dictionary = [c for c in columns if _is_text(types[c]) and c not in as_dictionary]
    per_column = dict.fromkeys(columns, 0)
    longest: dict[str, int] = dict.fromkeys(columns, 0)
    widest_row = 0.0
    probe: pq.ParquetFile | None = None
    for r in range(meta.num_row_groups):
        group = meta.row_group(r)
        chunks: dict[str, list[pq.ColumnChunkMetaData]] = {}
        for j in range(group.num_columns):
            chunk = group.column(j)
            chunks.setdefault(chunk.path_in_schema.split(".", 1)[0], []).append(chunk)
        dictionary_coded = [
            c for c in through_dictionary if any(chunk.has_dictionary_page for chunk in chunks.get(c, []))
        ]
        widths: dict[str, int] = {}
        if dictionary_coded and group.num_rows:
            probe = probe or open_with_dictionaries(through_dictionary)
            widths = _longest_values(probe, r, dictionary_coded)
        group_bytes = 0
        for c in columns:
            found = chunks.get(c, [])
            pages = sum(chunk.total_uncompressed_size for chunk in found)
            rows = max((chunk.num_values for chunk in found), default=group.num_rows)
            size = _column_bytes(types[c], rows, pages, c in as_dictionary, widths.get(c, 0))
            per_column[c] += size
            longest[c] = max(longest[c], widths.get(c, 0))
            group_bytes += size
        if group.num_rows:
            widest_row = max(widest_row, group_bytes / group.num_rows)
    sizes = tuple(ColumnSize(c, per_column[c], _why(c, longest[c])) for c in columns)
    return DecodedSize(bytes=sum(per_column.values()), widest_row=widest_row, columns=sizes)


def batch_rows(size: DecodedSize, target_bytes: int, most: int) -> int:
    """Rows per batch so that a batch of the widest row group takes about ``target_bytes`` (1 to ``most``)."""
    if size.widest_row <= 0:
        return most
    return max(1, min(most, int(target_bytes / size.widest_row)))


def _stored_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _column_bytes(kind: pa.DataType, rows: int, pages: int, as_dictionary: bool, longest: int) -> int:
    validity = rows // 8 + 1
    if _is_text(kind):
        offsets = rows * (8 if pa.types.is_large_string(kind) or pa.types.is_large_binary(kind) else 4)
        if as_dictionary:  # indices and the distinct values, which the pages hold at most once
            return pages + 4 * rows + validity
        # Values stored as they are (pages), and every row at most the longest value of the dictionary (if any).
        return pages + offsets + rows * longest + validity
    try:
        bits = int(kind.bit_width)
    except ValueError:  # nested or variable width other than text: what the pages hold, and a word per row
        return pages + 8 * rows + validity
    return (rows * bits + 7) // 8 + validity


def _longest_values(probe: pq.ParquetFile, row_group: int, columns: list[str]) -> dict[str, int]:
    """The longest dictionary value of each of ``columns`` in ``row_group``: decoding one row decodes the
    dictionary page whole (the values of later pages join it only after a fallback to plain pages, which the
    footer's page sizes count)."""
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
