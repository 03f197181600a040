"""Scoring payloads: parse ``{"data": [...]}`` / ``{"input_data": ...}`` and check each row against the contract.

Every problem names the row index and the column, e.g.
``row 3, column 'amount': expected a number, got "12,50" (str)``, so a caller can fix the exact cell.
Unknown categories are accepted (the model maps them to "other"). A bool column takes true/false, 0/1 and the
strings its data may hold ("yes", "N", ...: BOOL_TRUE / BOOL_FALSE, as validation and training read them). A
category column takes strings, and whole numbers too (5, or 5.0: spelt "5" as training spells a number it read,
``data.as_text``). Keys must be contract columns: the features, and the others the contract declares (ids, the
label), which are ignored; any other key is an error, so a misspelt nullable column is not silently scored as
missing. Keys and column names are compared in Unicode NFC, so an "é" sent decomposed (e + a combining accent)
matches the contract's "é".
"""

from __future__ import annotations

import difflib
import json
import math
import unicodedata
from collections import Counter
from collections.abc import Collection
from typing import Any

from training_jobs.contract import BOOL_FALSE, BOOL_TRUE, Column

#: What a bool column takes besides true/false: 0/1, and these strings in any case (the validator's spellings).
BOOL_SPELLINGS = BOOL_TRUE | BOOL_FALSE
BOOL_HINT = 'or 0/1, or a string: "true"/"false", "1"/"0", "yes"/"no", "y"/"n" or "t"/"f", any case'

MAX_ROWS = 10_000
MAX_BODY_BYTES = 32 << 20  # 10,000 rows of a wide contract fit several times over
MAX_LISTED_PROBLEMS = 20


class PayloadError(ValueError):
    """The request body is malformed; the message says where and how. Servers answer it with a 400."""


def parse_records(raw: str | bytes | dict[str, Any] | list[Any]) -> list[Any]:
    """The rows of a request: a list of objects, from any of the accepted envelopes."""
    document: Any = raw
    if isinstance(raw, str | bytes):
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadError(f"the body is {len(raw):,} bytes; send at most {MAX_BODY_BYTES >> 20} MiB per request")
        try:
            document = json.loads(raw)
        except RecursionError:
            raise PayloadError('the body nests too deeply; send {"data": [{"column": value, ...}]}') from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a number with thousands of digits
            raise PayloadError(f'the body is not JSON ({exc}); send {{"data": [{{"column": value, ...}}]}}') from None
    if not isinstance(document, dict):
        raise PayloadError('the body must be a JSON object: {"data": [{"column": value, ...}, ...]}')
    key = "data" if "data" in document else "input_data" if "input_data" in document else None
    if key is None:
        raise PayloadError(f'the body has no "data" (or "input_data") key; found: {sorted(document)[:10]}')
    rows = document[key]
    if isinstance(rows, dict) and "columns" in rows and "data" in rows:
        rows = _split_to_records(rows, key)
    if not isinstance(rows, list):
        raise PayloadError(f'"{key}" must be a list of row objects, got {type(rows).__name__}')
    if not rows:
        raise PayloadError(f'"{key}" is empty: send at least one row')
    if len(rows) > MAX_ROWS:
        raise PayloadError(f'"{key}" has {len(rows)} rows; send at most {MAX_ROWS} per request')
    return rows


def _split_to_records(split: dict[str, Any], key: str) -> list[Any]:
    """Azure ML's pandas "split" orientation: {"columns": [...], "data": [[...], ...]}."""
    columns, values = split["columns"], split["data"]
    if not isinstance(columns, list) or not isinstance(values, list):
        raise PayloadError(f'"{key}.columns" and "{key}.data" must be lists')
    seen: set[str] = set()
    for i, name in enumerate(columns):
        if not isinstance(name, str):
            raise PayloadError(f'"{key}.columns[{i}]" must be a column name (a string), got {_describe(name)}')
        if nfc(name) in seen:
            raise PayloadError(f'"{key}.columns[{i}]" repeats the column {name!r}: name each column once')
        seen.add(nfc(name))
    records: list[Any] = []
    for i, row in enumerate(values):
        if not isinstance(row, list) or len(row) != len(columns):
            raise PayloadError(f"row {i}: expected a list of {len(columns)} values matching {key}.columns")
        records.append(dict(zip(columns, row, strict=True)))
    return records


def nfc(name: Any) -> Any:
    """A key in Unicode NFC (others as they are): "é" typed as one code point or as e + U+0301 is one name."""
    return unicodedata.normalize("NFC", name) if isinstance(name, str) and not name.isascii() else name


def _ascii_keys(row: dict[Any, Any]) -> bool:
    """Whether every key is an ASCII string (already NFC): the common case, checked in one pass."""
    try:
        return "".join(row).isascii()
    except TypeError:  # a key that is not a string (a body passed in as a dict)
        return False


def _describe(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool) or value is None else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def _check_value(column: Column, value: Any) -> str | None:
    """The problem with one cell, or None."""
    if value is None:
        return None if column.nullable else "is required (the contract says nullable: false)"
    if column.type in ("float", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {_describe(value)}"
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int beyond float's range
            return f"{_describe(value)} is too large for a number"
        if not finite:
            return f"expected a finite number, got {_describe(value)}"
        if column.type == "int" and not float(value).is_integer():
            return f"expected a whole number, got {_describe(value)}"
        if column.min is not None and value < column.min:
            return f"{value} is below the minimum {column.min:g}"
        if column.max is not None and value > column.max:
            return f"{value} is above the maximum {column.max:g}"
        return None
    if column.type == "bool":
        # As validation and training read a bool column: true/false, 0/1, or a string spelling one (any case).
        if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
            return None
        if isinstance(value, str) and value.strip().lower() in BOOL_SPELLINGS:
            return None
        return f"expected true or false ({BOOL_HINT}), got {_describe(value)}"
    if column.type == "category" and isinstance(value, int | float) and not isinstance(value, bool):
        # Training reads a category column of numbers too (a CSV's 5, a Parquet float64's 5.0): both are "5".
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return f"expected a string or a whole number, got {_describe(value)}"
        return None
    if not isinstance(value, str):
        return f"expected a string, got {_describe(value)}"
    return None


def validate_records(
    rows: list[Any], columns: list[Column], known: Collection[str] | None = None
) -> dict[str, list[Any]]:
    """Check every row; return the feature columns as lists (None for missing) or raise PayloadError.

    ``known``: every column name the contract declares; a key outside it is reported (None: not checked)."""
    shown: list[str] = []  # the first MAX_LISTED_PROBLEMS problems; the rest are only counted
    count = 0
    unknown_keys: dict[Any, str] = {}  # key -> its message: "did you mean" is worked out once per key
    out: dict[str, list[Any]] = {c.name: [] for c in columns}
    names = [(column, nfc(column.name)) for column in columns]
    known_names = None if known is None else {nfc(name) for name in known}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            count += 1
            if len(shown) < MAX_LISTED_PROBLEMS:
                shown.append(f"row {i}: expected an object of column: value, got {_describe(row)}")
            continue
        keyed = row if _ascii_keys(row) else {nfc(key): value for key, value in row.items()}
        if len(keyed) < len(row):
            count += 1
            if len(shown) < MAX_LISTED_PROBLEMS:
                twice = next(name for name, n in Counter(nfc(k) for k in row).items() if n > 1)
                shown.append(f"row {i}: key {twice!r} is sent twice, in two Unicode spellings: send it once")
        if known_names is not None:
            for key in keyed:
                if key not in known_names:
                    count += 1
                    if len(shown) < MAX_LISTED_PROBLEMS:
                        if key not in unknown_keys:
                            unknown_keys[key] = _unknown_key(key, known_names)
                        shown.append(f"row {i}: {unknown_keys[key]}")
        for column, name in names:
            value = keyed.get(name)
            problem = _check_value(column, value)
            if problem is not None:
                count += 1
                if len(shown) < MAX_LISTED_PROBLEMS:
                    if name not in keyed:
                        problem = "is missing (required: the contract says nullable: false)"
                    shown.append(f"row {i}, column {column.name!r}: {problem}")
            out[column.name].append(value)
    if count:
        more = count - len(shown)
        tail = f"; and {more} more problem(s)" if more else ""
        raise PayloadError(f"{count} invalid value(s): " + "; ".join(shown) + tail)
    return out


def _unknown_key(key: Any, known: Collection[str]) -> str:
    text = str(key)
    same_but_case = [name for name in known if name.lower() == text.lower()]
    close = same_but_case or difflib.get_close_matches(text, list(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "send only the columns of the contract"
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f"key {shown!r} is not a column of the model's contract ({hint})"
