"""Cast one raw column (as read from CSV or Parquet) to the type the data contract declares.

The fast path is one Arrow cast per batch. When it fails (a bad value somewhere in the batch),
the batch falls back to a per-value Python parse that keeps the good values, turns the bad
ones into nulls and remembers where they were, so a report can say "row 1234: 'abc' is not a
float" and still profile the rest. Bad batches are rare, so the slow path's cost does not
matter; the fast path's does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.spec import BOOL_FALSE, BOOL_TRUE, ColumnType

#: The Arrow type every contract type is normalised to.
ARROW_TYPES: dict[str, pa.DataType] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "category": pa.string(),
    "timestamp": pa.timestamp("us"),
}

# How a bool column spells true and false (any case): one definition, shared.spec's, for the whole app.
_TRUE, _FALSE = BOOL_TRUE, BOOL_FALSE

#: The text that means "missing" in a number, bool or timestamp column: pandas' default ``na_values``
#: (which training's ``read_csv`` uses), a superset of Arrow's default ``null_values``. In a string or
#: category column only the empty field is missing ("NA" is the region code NA): see shared.tabular_io.
MISSING_TOKENS: tuple[str, ...] = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)
_MISSING = frozenset(MISSING_TOKENS)
_MISSING_SET = pa.array(MISSING_TOKENS, pa.string())


def label_tokens_as_missing(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A text label column with the missing tokens (``NA``, ``null``, the empty string, …) as missing: an
    unlabelled row, whatever the label's type and the file's format (training_jobs/data.py reads labels so)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not _is_text(array.type):
        return array
    tokens = pc.is_in(array.cast(pa.string()), value_set=_MISSING_SET)
    if not pc.any(tokens).as_py():
        return array
    return pc.if_else(tokens, pa.scalar(None, array.type), array)


@dataclass
class CastResult:
    """A column in its contract type. ``values`` is null where the input was missing or bad."""

    values: pa.Array
    missing: int
    bad: int = 0
    #: (row offset within the batch, the raw value as text) of the first few bad values.
    bad_examples: list[tuple[int, str]] = field(default_factory=list)
    #: Boolean mask of bad rows (None when there are none), so callers can tell bad from missing.
    bad_mask: np.ndarray[Any, np.dtype[np.bool_]] | None = None


def conform(array: pa.Array | pa.ChunkedArray, column_type: ColumnType, max_examples: int = 5) -> CastResult:
    """Cast ``array`` to the Arrow type of ``column_type``; never raises on bad values."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    target = ARROW_TYPES[column_type]
    if pa.types.is_dictionary(array.type):
        if column_type == "category" and _is_text(array.type.value_type):
            # A dictionary-encoded category column stays encoded: counting its values is then a
            # bincount of small integers (value_counts) rather than hashing every string.
            if array.type.value_type != pa.string():
                array = array.cast(pa.dictionary(array.type.index_type, pa.string()))
            return CastResult(values=array, missing=array.null_count)
        array = array.dictionary_decode()
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        array = array.cast(pa.string())  # one kind of text for the casts and checks below (the hex guard, say)
    try:
        values = _fast_cast(array, column_type, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        if column_type not in ("bool", "timestamp", "float", "int") or not pa.types.is_string(array.type):
            return _slow_cast(array, column_type, target, max_examples)
        # Text that spells "missing" ("NA", "null", …) is missing, not bad: null it and try the fast cast again.
        tokens = pc.is_in(array, value_set=_MISSING_SET)
        if not pc.any(tokens).as_py():
            return _slow_cast(array, column_type, target, max_examples)
        try:
            values = _fast_cast(pc.if_else(tokens, pa.scalar(None, pa.string()), array), column_type, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return _slow_cast(array, column_type, target, max_examples)
    if column_type == "float" and values.null_count < len(values) and not _all_finite(values):
        return _non_finite(values, array, max_examples)
    return CastResult(values=values, missing=values.null_count)


def _all_finite(values: pa.Array) -> bool:
    """Whether a float64 array holds only finite numbers among its non-null values (numpy on the data buffer:
    ~5x cheaper than Arrow's is_nan + any; when the sum is not finite, :func:`_non_finite` looks closer, so
    a sum that overflows or a null slot's stale bytes cost a second look, not a wrong answer)."""
    data = values.buffers()[1]
    if data is None:
        return True
    raw = np.frombuffer(data, dtype=np.float64, count=len(values), offset=values.offset * 8)
    with np.errstate(all="ignore"):  # inf - inf is NaN: no warning, the answer is the same
        return math.isfinite(raw.sum())


def _non_finite(values: pa.Array, raw: pa.Array, max_examples: int) -> CastResult:
    """NaN is how pandas and many writers spell "missing" in a float column: missing. An infinity is no
    measurement (it breaks every mean, histogram and drift distance downstream): a bad value, like text that
    does not parse, named in the report as it was written (``raw``: the column before the cast)."""
    values = pc.if_else(pc.is_nan(values), pa.scalar(None, pa.float64()), values)
    infinite = pc.fill_null(pc.is_inf(values), False)
    bad = int(pc.sum(infinite).as_py() or 0)
    if not bad:
        return CastResult(values=values, missing=values.null_count)
    mask = infinite.to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(mask)
    examples = [(int(i), _as_text(raw[int(i)].as_py())) for i in rows[:max_examples]]
    values = pc.if_else(infinite, pa.scalar(None, pa.float64()), values)
    return CastResult(
        values=values, missing=values.null_count - bad, bad=bad, bad_examples=examples, bad_mask=mask.astype(np.bool_)
    )


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def value_counts(values: pa.Array) -> pa.StructArray:
    """``pc.value_counts`` of the non-null values (struct of ``values`` and ``counts``).

    A dictionary array is counted by a bincount of its indices (a value may then appear twice if
    the dictionary repeats it; callers add counts up by value).
    """
    if not pa.types.is_dictionary(values.type):
        return pc.value_counts(values.drop_null() if values.null_count else values)
    counts = np.bincount(numbers(values.indices), minlength=len(values.dictionary))
    used = np.flatnonzero(counts)
    return pa.StructArray.from_arrays(
        [values.dictionary.take(pa.array(used)), pa.array(counts[used], pa.int64())], names=["values", "counts"]
    )


def numbers(values: pa.Array) -> np.ndarray[Any, Any]:
    """The non-null values of a numeric Arrow array as a numpy array (no copy when none is null).

    Reads the Arrow buffers directly: ~5x cheaper than ``drop_null().to_numpy()``.
    """
    kind = values.type
    if not (pa.types.is_integer(kind) or pa.types.is_float32(kind) or pa.types.is_float64(kind)):
        present = values.drop_null() if values.null_count else values
        return np.asarray(present.to_numpy(zero_copy_only=False))
    dtype = np.dtype(kind.to_pandas_dtype())
    n, offset = len(values), values.offset
    validity, data = values.buffers()[:2]
    if data is None or values.null_count == n:
        return np.zeros(0, dtype=dtype)
    raw = np.frombuffer(data, dtype=dtype, count=n, offset=offset * dtype.itemsize)
    if values.null_count == 0 or validity is None:
        return raw
    bits = np.frombuffer(validity, dtype=np.uint8, count=(offset + n + 7) // 8)
    valid = np.unpackbits(bits, count=offset + n, bitorder="little")[offset:].view(np.bool_)
    return raw[valid]


def _fast_cast(array: pa.Array, column_type: ColumnType, target: pa.DataType) -> pa.Array:
    source = array.type
    if source == target:
        return array
    if column_type in ("string", "category"):
        if pa.types.is_floating(source):  # a float NaN is missing, as pandas (training) reads it, not the text "nan"
            array = pc.if_else(pc.is_nan(array), pa.scalar(None, source), array)
        return array.cast(pa.string())
    if column_type == "bool" and not (pa.types.is_string(source) or pa.types.is_boolean(source)):
        raise pa.ArrowInvalid("only strings and booleans are cast to bool on the fast path")
    if column_type == "bool" and pa.types.is_string(source):
        # Arrow accepts true/false/1/0 in any case; anything else fails and goes the slow path.
        return array.cast(pa.bool_())
    if column_type == "float" and (pa.types.is_integer(source) or pa.types.is_decimal(source)):
        return array.cast(target, safe=False)
    if (
        column_type == "int"
        and pa.types.is_string(source)
        and pc.any(pc.match_substring(array, "x", ignore_case=True)).as_py()
    ):
        # Arrow reads "0x17" as 23 (pandas, in training: missing); the slow path calls it a bad value.
        raise pa.ArrowInvalid("hexadecimal text is not read as an int")
    if column_type == "timestamp":
        if pa.types.is_integer(source) or pa.types.is_floating(source) or pa.types.is_decimal(source):
            # Arrow would read 1700000000 as microseconds since 1970, silently; the unit is anybody's
            # guess, so a number is a bad timestamp here as it is in a CSV (the slow path names it).
            raise pa.ArrowInvalid("numbers are not read as timestamps")
        if pa.types.is_timestamp(source) and source.tz is not None:
            return array.cast(pa.timestamp(source.unit)).cast(target)
        if pa.types.is_string(source):
            try:
                return array.cast(target)
            except pa.ArrowInvalid:
                # ISO 8601 with a zone offset ("...Z", "+02:00"): parse as UTC, then drop the zone.
                return array.cast(pa.timestamp("us", tz="UTC")).cast(target)
    # Safe casts refuse to truncate 1.5 to an int or overflow: those go the slow path.
    return array.cast(target, safe=True)


def _slow_cast(array: pa.Array, column_type: ColumnType, target: pa.DataType, max_examples: int) -> CastResult:
    parse = _PARSERS[column_type]
    missing_text = column_type not in ("string", "category")  # "NA" is a value of a text column
    raw = array.to_pylist()
    parsed: list[Any] = []
    bad_rows: list[int] = []
    missing = 0
    for i, value in enumerate(raw):
        if value is None or (missing_text and isinstance(value, str) and value in _MISSING):
            parsed.append(None)
            missing += 1
            continue
        try:
            result = parse(value)
        except (ValueError, TypeError, OverflowError, UnicodeDecodeError):
            parsed.append(None)
            bad_rows.append(i)
            continue
        if result is None:  # a NaN float: missing, not bad
            missing += 1
        parsed.append(result)
    values = pa.array(parsed, type=target)
    mask = np.zeros(len(raw), dtype=np.bool_)
    mask[bad_rows] = True
    examples = [(i, _as_text(raw[i])) for i in bad_rows[:max_examples]]
    return CastResult(values=values, missing=missing, bad=len(bad_rows), bad_examples=examples, bad_mask=mask)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def _number_text(value: str | bytes) -> str:
    """Text that may be read as a number: ASCII, no ``_``. Python's int() and float() also read "1_000", "٣" and a
    full-width "１", which pandas (training) reads as missing: a value the two would read apart is a bad value."""
    text = value.decode() if isinstance(value, bytes) else value
    if not text.isascii() or "_" in text:
        raise ValueError(f"{text!r} is not a number written in ASCII digits")
    return text


def _parse_float(value: Any) -> float | None:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a float")
    result = float(_number_text(value) if isinstance(value, str | bytes) else value)
    if math.isinf(result):
        raise ValueError(f"{value!r} is not a finite number")
    return None if math.isnan(result) else result


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an int")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        result = int(value)
    elif isinstance(value, Decimal):  # a Parquet decimal column: int() would drop a fraction
        if not value.is_finite() or value != value.to_integral_value():
            raise ValueError(f"{value} is not a whole number")
        result = int(value)
    else:
        text = _number_text(value)
        try:
            result = int(text)
        except (ValueError, TypeError):
            # "3.0" is how pandas writes an int column that has a gap; accept whole numbers only.
            number = float(text)
            if not number.is_integer():
                raise ValueError(f"{text!r} is not a whole number") from None
            result = int(number)
    if not -(2**63) <= result < 2**63:
        raise OverflowError(f"{result} does not fit in 64 bits")
    return result


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = (value.decode() if isinstance(value, bytes) else str(value)).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        text = value.decode() if isinstance(value, bytes) else str(value)
        parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _parse_string(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")  # strict: a non-UTF-8 value is bad, not silently mangled
    return str(value)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "float": _parse_float,
    "int": _parse_int,
    "bool": _parse_bool,
    "timestamp": _parse_timestamp,
    "string": _parse_string,
    "category": _parse_string,
}
