"""Check a batch of data against a model's data contract in one streaming pass.

``validate(source, contract)`` reads a CSV or Parquet file (a path or any readable binary
stream, e.g. a blob download) as Arrow record batches, casts each column to its contract
type, runs every check and builds the batch's profile (``shared.profile``) in the same
pass, so memory stays bounded by a few record batches in flight (CSV blocks being parsed, one
prefetched, some queued for the column lanes) plus the profile and the key set
(``shared.keyset``), whatever the file size.

Checks (their severities come from ``data.severity`` in the spec): missing columns, type
mismatches (with the failing values and where they are), nulls in non-nullable columns, the
missing rate, numeric ranges, unknown categories, too few rows, duplicate keys, the label's
presence and class balance, label values training would refuse (``label_class``: always an error),
and a CSV header that is one column of ``;``-, tab- or
``|``-separated names (another CSV dialect). Input that cannot be read at all (truncated
Parquet, ragged or binary CSV, a wrong encoding, an empty file) produces a failed report that
says why. A read that fails for a reason that says nothing about the bytes (a dropped connection,
a timeout, the blob changed or deleted mid-read, a bug of ours) raises instead: a failed report
gets the blob quarantined, out of landing (see :func:`validate`). Examples are placed by data row
(from 0) and, in a CSV, by the line of the file (see :class:`Example`).
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import gzip
import json
import logging
import math
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.keyset import KeySet, hash_keys
from shared.profile import (
    DEFAULT_BINS,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_TOP_K,
    DatasetProfile,
    ProfileBuilder,
)
from shared.spec import ColumnSpec, DataContract, Severity, Task, label_class, label_key
from shared.spec import declared_classes as spec_declared_classes
from shared.tabular_io import CorruptInput, Format, Source, TabularSource, human_bytes, prefetch, usable_cpus
from shared.typecast import _FALSE, _TRUE, ARROW_TYPES, conform, label_tokens_as_missing, numbers, value_counts

log = logging.getLogger(__name__)

MAX_EXAMPLES = 5
MAX_LABEL_CLASSES = 1000

Check = Literal[
    "corrupt_input",
    "malformed_rows",
    "missing_column",
    "missing_label",
    "extra_column",
    "type_mismatch",
    "null_in_required",
    "missing_rate",
    "out_of_range",
    "unseen_category",
    "too_few_rows",
    "duplicate_key",
    "label_imbalance",
    "label_class",
    "wrong_delimiter",
]

#: Errors that are a verdict on the bytes: they do not parse as what the file claims to be (text that is
#: not UTF-8, the csv module refusing the header, a damaged or cut compressed stream). Only these, and
#: tabular_io's CorruptInput (which wraps pyarrow's decoding errors), become a ``corrupt_input`` finding;
#: anything else raised while validating propagates (see :func:`validate`). pyarrow's errors outside the
#: reader are not listed: one raised by a compute kernel (a range check overflowing on a huge integer) is
#: a bug of ours, not a file to re-export.
UNREADABLE_BYTES: tuple[type[Exception], ...] = (
    UnicodeError,
    csv.Error,
    zlib.error,
    gzip.BadGzipFile,
    EOFError,
)

# Delimiters of other CSV dialects, by name: a one-column CSV header holding one was not split.
OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


@dataclass
class Example:
    """Where a problem is, and the value found there.

    ``row`` counts data rows from 0 (the first row after a CSV header is 0; Parquet's first row is
    0). It counts the rows that were read: a malformed CSV row's own ``row`` counts every data row,
    the other findings' rows count only the well-formed ones. ``line`` is for people: the line of a
    CSV file the row starts on, the header being line 1 (the number an editor shows; blank lines and
    values spanning lines are counted); None for Parquet, when the rows skipped as malformed cannot
    all be placed, or when the row's line is not known (see ``TabularSource.line_of``). Either is
    None when unknown.
    """

    row: int | None
    value: str
    line: int | None = None


@dataclass
class Finding:
    check: Check
    severity: Severity
    message: str
    remediation: str
    column: str | None = None
    count: int = 0
    examples: list[Example] = field(default_factory=list)


@dataclass
class ValidationReport:
    source: str
    format: str
    rows: int
    bytes_read: int
    columns: list[str]
    findings: list[Finding]
    profile: DatasetProfile | None
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no finding is an error (warnings do not stop a batch)."""
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self, include_profile: bool = True) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "format": self.format,
            "rows": self.rows,
            "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 4),
            "columns": self.columns,
            "findings": [asdict(f) for f in self.findings],
            "notes": self.notes,
            "profile": self.profile.to_dict() if include_profile and self.profile is not None else None,
        }

    def to_json(self, include_profile: bool = True) -> str:
        return json.dumps(self.to_dict(include_profile), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationReport:
        """Read ``to_dict``'s output; keys this version does not know (a newer writer's) are ignored."""
        findings = [
            Finding(
                **_known(Finding, f),
                examples=[Example(**_known(Example, e)) for e in f.get("examples", [])],
            )
            for f in data["findings"]
        ]
        profile = DatasetProfile.from_dict(data["profile"]) if data.get("profile") else None
        return cls(
            source=data["source"],
            format=data["format"],
            rows=int(data["rows"]),
            bytes_read=int(data["bytes_read"]),
            columns=list(data["columns"]),
            findings=findings,
            profile=profile,
            seconds=float(data["seconds"]),
            notes=list(data.get("notes", [])),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ValidationReport:
        return cls.from_dict(json.loads(text))

    def summary(self) -> str:
        """A few lines for a person: the verdict, then one line per finding."""
        verdict = "PASSED" if self.ok else "FAILED"
        head = (
            f"{verdict}: {self.source} ({self.format}, {self.rows:,} rows, {human_bytes(self.bytes_read)}, "
            f"{self.seconds:.2f} s): {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        )
        lines = [head]
        for f in self.findings:
            where = f" [{f.column}]" if f.column else ""
            places = locate(f.examples)
            at = f" ({places})" if places else ""
            lines.append(f"  {f.severity}{where} {f.check}: {f.message}{at}. Fix: {f.remediation}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def locate(examples: list[Example], values: bool = False) -> str:
    """Where ``examples`` are, for a person: ``lines 7, 12`` for CSV lines (the header is line 1),
    ``0-based rows 5, 11`` otherwise; with ``values``, each place is followed by ``='value'``.
    Empty when no example has a place."""
    parts: list[str] = []
    for unit, placed in (
        ("line", [(e.line, e) for e in examples if e.line is not None]),
        ("0-based row", [(e.row, e) for e in examples if e.line is None and e.row is not None]),
    ):
        if not placed:
            continue
        listed = ", ".join(f"{n}={e.value!r}" if values and e.value else str(n) for n, e in placed)
        parts.append(f"{unit}{'s' if len(placed) > 1 else ''} {listed}")
    return "; ".join(parts)


def _known(kind: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(kind)} - {"examples"}
    return {k: v for k, v in data.items() if k in names}


# --------------------------------------------------------------------------- per-column state


@dataclass
class _Tally:
    """A count and the first few examples of one problem in one column."""

    count: int = 0
    examples: list[Example] = field(default_factory=list)

    def add(self, count: int, examples: list[Example]) -> None:
        self.count += count
        room = MAX_EXAMPLES - len(self.examples)
        if room > 0:
            self.examples += examples[:room]


@dataclass
class _ColumnState:
    spec: ColumnSpec
    missing: int = 0
    bad_type: _Tally = field(default_factory=_Tally)
    nulls: _Tally = field(default_factory=_Tally)
    below: _Tally = field(default_factory=_Tally)
    above: _Tally = field(default_factory=_Tally)
    unseen: dict[str, int] = field(default_factory=dict)
    unseen_examples: list[Example] = field(default_factory=list)
    allowed: frozenset[str] | None = None


def _rows_where(mask: pa.Array | np.ndarray[Any, Any], offset: int, limit: int = MAX_EXAMPLES) -> list[int]:
    if isinstance(mask, np.ndarray):
        idx = np.flatnonzero(mask)[:limit]
    else:
        idx = pc.indices_nonzero(mask.fill_null(False)).slice(0, limit).to_numpy()
    return [offset + int(i) for i in idx]


class _Validator:
    def __init__(
        self,
        contract: DataContract,
        reference: DatasetProfile | None,
        max_keys: int,
        bins: int,
        sample_size: int,
        top_k: int,
        task: Task = "binary",
    ) -> None:
        self.contract = contract
        self.task = task
        self.policy = contract.severity
        self.findings: list[Finding] = []
        self.notes: list[str] = []
        self.rows = 0
        self.states = {c.name: _ColumnState(spec=c) for c in contract.columns}
        for state in self.states.values():
            # The label's categories are its declared classes, checked by the class training reads
            # (_check_label_classes).
            if state.spec.categories is not None and state.spec.name != contract.label:
                state.allowed = frozenset(state.spec.categories)
        kwargs: dict[str, Any] = {"bins": bins, "sample_size": sample_size, "top_k": top_k}
        self.profiler = (
            ProfileBuilder.from_reference(contract, reference, **kwargs)
            if reference is not None
            else ProfileBuilder(contract, **kwargs)
        )
        self.keys = KeySet(max_keys) if contract.key is not None else None
        self.duplicates = _Tally()
        self.label_counts: dict[str, int] = {}
        self.label_overflow = False
        # The labelled rows by the class training reads (spec.label_class), and where each class first occurs.
        self.label_classes: dict[str, int] = {}
        self.label_class_rows: dict[str, Example] = {}

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    # -- schema

    def check_schema(self, found: list[str], csv_header: bool = False) -> list[str]:
        """Check the file's columns (``csv_header``: they come from a CSV header line); return the
        contract's columns that are present."""
        present = set(found)
        dialect = _other_delimiter(found[0]) if csv_header and len(found) == 1 and found[0] not in self.states else None
        split_names: set[str] = set()
        if dialect is not None:
            delimiter, names = dialect
            split_names = set(names)
            by = OTHER_DELIMITERS[delimiter]
            shown = found[0] if len(found[0]) <= 60 else found[0][:60] + "…"
            known = sum(1 for n in split_names if n in self.states)
            self.add(
                Finding(
                    "wrong_delimiter",
                    "error",
                    f"the header is one column, {shown!r}; split at each {by} it gives {len(names)} names, "
                    f"{known} of them contract columns: the file looks {by}-delimited, but Perennial reads "
                    "comma-separated CSV",
                    "re-export the file comma-separated (Excel takes the delimiter from the system's list "
                    "separator; pandas: to_csv(sep=',')), or upload it as Parquet",
                )
            )
        missing = False
        for spec in self.contract.columns:
            if spec.name in present:
                continue
            missing = True
            if spec.name in split_names:
                assert dialect is not None
                hint = (
                    f"in the header if split at each {OTHER_DELIMITERS[dialect[0]]}: "
                    "re-export the file comma-separated (see wrong_delimiter)"
                )
            else:
                hint = _near_name_hint(spec.name, [c for c in found if c not in self.states])
            if spec.name == self.contract.label:
                self.add(
                    Finding(
                        "missing_label",
                        "error",
                        f"the label column {spec.name!r} is not in the file",
                        hint or f"add the label column {spec.name!r}; a batch without labels cannot be trained on",
                        column=spec.name,
                    )
                )
            else:
                self.add(
                    Finding(
                        "missing_column",
                        self.policy.missing_column,
                        f"the column {spec.name!r} ({spec.type}) is not in the file",
                        hint or "add the column, or remove it from data.columns in the spec if it is gone for good",
                        column=spec.name,
                    )
                )
        if missing and dialect is None:  # the columns found, once (not on every missing column's fix)
            more = f", … ({len(found)} in all)" if len(found) > 20 else ""
            self.notes.append(f"the file's columns: {', '.join(found[:20])}{more}")
        extra = [c for c in found if c not in self.states]
        if extra and dialect is None:  # a one-column header in another dialect is wrong_delimiter's finding
            self.add(
                Finding(
                    "extra_column",
                    "warning",
                    f"{len(extra)} column(s) not in the contract are ignored: {', '.join(extra[:10])}",
                    "add them to data.columns if the model should use them",
                    count=len(extra),
                )
            )
        return [c.name for c in self.contract.columns if c.name in present]

    # -- one record batch

    def batch(self, batch: pa.RecordBatch, lanes: _Lanes | None = None) -> None:
        """Check and profile one record batch: here, or handed to ``lanes`` (see :class:`_Lanes`)."""
        offset = self.rows
        n = batch.num_rows
        self.rows += n
        self.profiler.add_rows(n)
        # Only contract columns are checked (a batch read only to count its rows may have none).
        columns = [(name, batch.column(name)) for name in batch.schema.names if name in self.states]
        if not columns:
            return
        if lanes is None:
            for name, column in columns:
                self._column(name, column, offset)
        else:
            lanes.submit(columns, offset, self._column, self._cost)

    def _cost(self, name: str) -> float:
        """Rough relative cost of one column per row, to balance the lanes (measured on the benchmark)."""
        if name == self.contract.key:
            return 8.0  # hashing and the key set
        kind = self.states[name].spec.type
        return {"float": 1.0, "int": 0.65}.get(kind, 0.35)

    def _column(self, name: str, column: pa.Array, offset: int) -> None:
        state = self.states[name]
        if name == self.contract.label and state.spec.type in ("string", "category"):
            column = label_tokens_as_missing(column)  # NA or null: an unlabelled row, as training reads it
        result = conform(column, state.spec.type, MAX_EXAMPLES)
        values = result.values
        if result.bad:
            state.bad_type.add(result.bad, [Example(offset + i, v) for i, v in result.bad_examples])
        state.missing += result.missing
        if result.missing and not state.spec.nullable:
            mask = values.is_null()
            if result.bad_mask is not None:
                mask = pc.and_(mask, pa.array(~result.bad_mask))
            state.nulls.add(
                result.missing,
                [Example(r, "") for r in _rows_where(mask, offset)] if len(state.nulls.examples) < MAX_EXAMPLES else [],
            )
        present: np.ndarray[Any, Any] | None = None
        bounds: tuple[float, float] | None = None
        if state.spec.type in ("float", "int"):
            # The non-null values as numpy, once: the range check and the profile share them.
            present = numbers(values)
            if present.size:
                low, high = present.min(), present.max()
                bounds = (float(low), float(high))
                if state.spec.min is not None or state.spec.max is not None:
                    self._check_range(state, values, offset, low, high)
        counted = self._check_categories(state, values, offset) if state.allowed is not None else None
        self.profiler.update(name, values, counted, present=present, bounds=bounds)
        if name == self.contract.key and self.keys is not None:
            self._check_keys(values, offset)
        if name == self.contract.label:
            self._count_labels(values, offset, present, bounds)

    def _check_range(self, state: _ColumnState, values: pa.Array, offset: int, low: Any, high: Any) -> None:
        """``low`` and ``high`` are the batch's min and max (numpy scalars, exact for int64)."""
        lo, hi = state.spec.min, state.spec.max
        if lo is not None and low < lo:
            mask = pc.less(values, _bound(values, lo, math.ceil))
            count = int(pc.sum(mask).as_py() or 0)
            rows = _rows_where(mask, offset) if len(state.below.examples) < MAX_EXAMPLES else []
            state.below.add(count, [Example(r, str(values[r - offset].as_py())) for r in rows])
        if hi is not None and high > hi:
            mask = pc.greater(values, _bound(values, hi, math.floor))
            count = int(pc.sum(mask).as_py() or 0)
            rows = _rows_where(mask, offset) if len(state.above.examples) < MAX_EXAMPLES else []
            state.above.add(count, [Example(r, str(values[r - offset].as_py())) for r in rows])

    def _check_categories(self, state: _ColumnState, values: pa.Array, offset: int) -> pa.StructArray:
        """Record values outside the declared categories; return the value counts for the profile."""
        assert state.allowed is not None
        counted = value_counts(values)
        unseen = [
            (str(v), int(c))
            for v, c in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
            if str(v) not in state.allowed
        ]
        if not unseen:
            return counted
        for value, count in unseen:
            state.unseen[value] = state.unseen.get(value, 0) + count
        room = MAX_EXAMPLES - len(state.unseen_examples)
        if room > 0:
            unseen_set = pa.array([v for v, _ in unseen], pa.string())
            if pa.types.is_dictionary(values.type):  # mark rows by their codes: decoding repeats each value per row
                mask = pc.take(pc.is_in(values.dictionary.cast(pa.string()), value_set=unseen_set), values.indices)
            else:
                mask = pc.is_in(values, value_set=unseen_set)
            state.unseen_examples += [
                Example(r, str(values[r - offset].as_py())) for r in _rows_where(mask, offset, room)
            ]
        if len(state.unseen) > 10 * MAX_LABEL_CLASSES:  # a free-text column: keep the report small
            top = sorted(state.unseen.items(), key=lambda kv: -kv[1])[:MAX_LABEL_CLASSES]
            state.unseen = dict(top)
        return counted

    def _check_keys(self, values: pa.Array, offset: int) -> None:
        assert self.keys is not None
        present = values if not values.null_count else values.filter(values.is_valid())
        duplicate = self.keys.add(hash_keys(present))
        count = int(duplicate.sum())
        if not count:
            return
        examples: list[Example] = []
        if len(self.duplicates.examples) < MAX_EXAMPLES:
            positions = np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False)) if values.null_count else None
            for i in np.flatnonzero(duplicate)[:MAX_EXAMPLES]:
                row = int(positions[i]) if positions is not None else int(i)
                examples.append(Example(offset + row, str(values[row].as_py())))
        self.duplicates.add(count, examples)

    def _count_labels(
        self,
        values: pa.Array,
        offset: int,
        present: np.ndarray[Any, Any] | None,
        bounds: tuple[float, float] | None,
    ) -> None:
        if self.label_overflow:
            return
        if (
            present is not None
            and present.dtype == np.int64
            and bounds is not None
            and 0 <= bounds[0] <= bounds[1] < 1024
        ):
            # Small non-negative int classes (the usual label): a bincount, ~4x cheaper than hashing.
            counts = np.bincount(present)
            pairs: list[tuple[Any, int]] = [(int(v), int(counts[v])) for v in np.flatnonzero(counts)]
        else:
            counted = value_counts(values)
            pairs = list(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True))
        kind = self.states[self.contract.label].spec.type
        new: dict[str, Any] = {}  # classes this batch is the first to hold, by one of their values
        for v, c in pairs:
            key = _label_key(v)
            self.label_counts[key] = self.label_counts.get(key, 0) + int(c)
            cls = label_class(v, kind)
            if cls not in self.label_classes:
                new.setdefault(cls, v)
            self.label_classes[cls] = self.label_classes.get(cls, 0) + int(c)
        if new and len(self.label_classes) <= MAX_LABEL_CLASSES:  # past it the classes are not checked one by one
            rows = _first_rows(values, list(new.values()), offset)
            for (cls, v), row in zip(new.items(), rows, strict=True):
                self.label_class_rows[cls] = Example(row, str(v))
        if len(self.label_counts) > MAX_LABEL_CLASSES:
            self.label_overflow = True
            self.notes.append(
                f"the label has more than {MAX_LABEL_CLASSES} distinct values; the class balance was not checked "
                "(is this a regression target? the task must be binary or multiclass)"
            )

    # -- verdicts at the end

    def finish(self, present: list[str]) -> None:
        c = self.contract
        p = self.policy
        for name in present:
            state = self.states[name]
            spec = state.spec
            if state.bad_type.count:
                self.add(
                    Finding(
                        "type_mismatch",
                        p.type_mismatch,
                        f"{state.bad_type.count:,} value(s) cannot be read as {spec.type}",
                        f"fix the upstream export of {name!r} so every value is a {spec.type} "
                        "(or change its type in data.columns); bad values were treated as missing",
                        column=name,
                        count=state.bad_type.count,
                        examples=state.bad_type.examples,
                    )
                )
            if state.nulls.count:
                self.add(
                    Finding(
                        "null_in_required",
                        p.null_in_required,
                        f"{state.nulls.count:,} missing value(s) in a column declared nullable: false",
                        f"fill {name!r} upstream, or set nullable: true for it in the spec",
                        column=name,
                        count=state.nulls.count,
                        examples=state.nulls.examples,
                    )
                )
            rate = (state.missing + state.bad_type.count) / self.rows if self.rows else 0.0
            if rate > c.max_missing_rate:
                self.add(
                    Finding(
                        "missing_rate",
                        p.missing_rate,
                        f"{rate:.2%} of the values are missing or unreadable (limit {c.max_missing_rate:.2%})",
                        f"find why {name!r} went missing upstream, or raise data.max_missing_rate",
                        column=name,
                        count=state.missing + state.bad_type.count,
                    )
                )
            for tally, side, bound in ((state.below, "below min", spec.min), (state.above, "above max", spec.max)):
                if tally.count:
                    self.add(
                        Finding(
                            "out_of_range",
                            p.out_of_range,
                            f"{tally.count:,} value(s) {side}={bound:g}",
                            f"check the upstream units/encoding of {name!r}, or widen its min/max in the spec",
                            column=name,
                            count=tally.count,
                            examples=tally.examples,
                        )
                    )
            if state.unseen:
                total = sum(state.unseen.values())
                top = sorted(state.unseen.items(), key=lambda kv: -kv[1])[:10]
                listed = ", ".join(f"{v!r}×{n:,}" for v, n in top)
                self.add(
                    Finding(
                        "unseen_category",
                        p.unseen_category,
                        f"{total:,} value(s) outside the declared categories: {listed}",
                        f"add the new values to categories of {name!r} in the spec if they are legitimate, "
                        "or fix the upstream mapping",
                        column=name,
                        count=total,
                        examples=state.unseen_examples,
                    )
                )
        if self.rows < c.min_rows:
            self.add(
                Finding(
                    "too_few_rows",
                    p.too_few_rows,
                    f"{self.rows:,} row(s), fewer than data.min_rows={c.min_rows:,}",
                    "wait for a larger batch (or merge small files upstream), or lower data.min_rows",
                    count=self.rows,
                )
            )
        if self.duplicates.count and self.keys is not None:
            coverage = self.keys.coverage
            estimate = round(self.keys.estimated_duplicates)
            how = "" if coverage == 1.0 else f" (estimated from a {coverage:.1%} hash sample of the keys)"
            self.add(
                Finding(
                    "duplicate_key",
                    p.duplicate_key,
                    f"{estimate:,} row(s) repeat a {c.key!r} seen earlier{how}",
                    "deduplicate the batch upstream (the same transaction exported twice?), or set data.key "
                    "to a column that identifies a row",
                    column=c.key,
                    count=estimate,
                    examples=self.duplicates.examples,
                )
            )
        if self.keys is not None and self.keys.coverage < 1.0:
            self.notes.append(
                f"more than {self.keys.max_keys:,} distinct keys: duplicate keys were checked exactly on a "
                f"{self.keys.coverage:.1%} hash sample of the key space (bounded memory)"
            )
        if c.label in present and self.rows:
            self._check_label_classes()  # past MAX_LABEL_CLASSES too: a binary label of so many values is no label
            if not self.label_overflow:
                self._check_label_balance()

    def _check_label_classes(self) -> None:
        """Refuse a batch whose labels training would refuse (training_jobs/data.py infer_label_space), so it is
        quarantined here, saying which values to fix, instead of failing the run's training job: a value outside
        the label's declared classes (its categories; a multiclass int label's min..max), or a third class in a
        binary label (one that declares three categories, too). Classes are compared as training spells them
        (``spec.label_class``: ``1.0`` is ``1``, `` yes`` is not ``yes``)."""
        c = self.contract
        label = self.states[c.label].spec
        declared = spec_declared_classes(label) if self.task == "multiclass" or label.categories is not None else None
        outside: list[str] = []
        if declared is not None:
            known = {label_key(d) for d in declared}  # as training reads the spec's classes
            outside = [k for k in self.label_classes if k not in known]
        if declared is not None and outside:
            shown = declared if len(declared) <= 20 else [*declared[:20], "..."]
            message = f"the label holds value(s) outside its declared classes {shown}: "
            remediation = f"fix the labels, or declare the value(s) in the spec (the categories of {c.label!r}" + (
                ", or its min/max)" if label.type == "int" else ")"
            )
        elif self.task == "binary" and len(self.label_classes) > 2:
            positive = label_class(c.positive_class, label.type)
            others = sorted((k for k in self.label_classes if k != positive), key=lambda k: (-self.label_classes[k], k))
            negative, outside = others[0], others[1:]
            held = f"more than {MAX_LABEL_CLASSES:,}" if self.label_overflow else f"{len(self.label_classes)}"
            message = (
                f"the task is binary but the label holds {held} classes: besides the positive "
                f"class {positive!r} and {negative!r} (the most frequent other) it holds "
            )
            remediation = (
                f"fix the labels (every one must be {negative!r} or {positive!r}), or set task: multiclass in the spec"
            )
        else:
            return
        outside.sort(key=lambda k: (-self.label_classes[k], k))
        shown_values = [(self.label_class_rows[k].value if k in self.label_class_rows else k) for k in outside[:10]]
        listed = ", ".join(f"{v!r}×{self.label_classes[k]:,}" for v, k in zip(shown_values, outside, strict=False))
        more = f" and {len(outside) - 10:,} more" if len(outside) > 10 else ""
        self.add(
            Finding(
                "label_class",
                "error",
                message + listed + more + " (training cannot use this batch)",
                remediation,
                column=c.label,
                count=sum(self.label_classes[k] for k in outside),
                examples=[self.label_class_rows[k] for k in outside if k in self.label_class_rows][:MAX_EXAMPLES],
            )
        )

    def _check_label_balance(self) -> None:
        c = self.contract
        labelled = sum(self.label_counts.values())
        if not labelled:
            return
        label = self.states[c.label].spec
        shares = {k: v / labelled for k, v in self.label_counts.items()}
        if self.task == "binary":  # the positive class must be there; a multiclass model has none
            positive = _label_key(c.positive_class, as_bool=label.type == "bool")
            shares.setdefault(positive, 0.0)
            which = f" (positive class {positive!r})"
        else:  # every declared class must be there: a class with no rows is one the model cannot learn
            for declared in _declared_classes(label):
                shares.setdefault(declared, 0.0)
            which = ""
        rarest, share = min(shares.items(), key=lambda kv: kv[1])
        balance = ", ".join(f"{k}: {v:.3%}" for k, v in sorted(shares.items()))
        if len(self.label_counts) < 2:  # one class only: nothing to learn from
            only = next(iter(self.label_counts))
            message = f"every labelled row has the label {only!r}{which}; classes: {balance}"
        elif share < c.min_label_share:
            message = (
                f"the rarest label class {rarest!r} is {share:.3%} of the rows (minimum {c.min_label_share:.3%}); "
                f"classes: {balance}"
            )
        else:
            return
        self.add(
            Finding(
                "label_imbalance",
                self.policy.label_imbalance,
                message,
                "check the labelling pipeline (did positives stop arriving?), or lower data.min_label_share",
                column=c.label,
                count=self.label_counts.get(rarest, 0),
            )
        )


class _Lanes:
    """Columns checked in parallel: each column belongs to one lane (a single worker thread), which
    runs its columns batch after batch, in order.

    Every column has its own state (tallies, profile, random generator; the key set and the label
    counts belong to one column each), so lanes never share state, and a lane's FIFO keeps each
    column's batches in order. Lanes do not wait for each other at batch boundaries (the key
    column, the slowest, does not hold the others up); at most MAX_BATCHES_IN_FLIGHT batches are
    pending, which bounds memory. Columns go to lanes by a rough cost, greedily, at the first batch.
    """

    MAX_BATCHES_IN_FLIGHT = 3

    def __init__(self, workers: int) -> None:
        self._workers = [ThreadPoolExecutor(1, thread_name_prefix=f"perennial-lane{i}") for i in range(workers)]
        self._lane: dict[str, int] = {}
        self._pending: deque[list[Future[None]]] = deque()

    def submit(
        self,
        columns: list[tuple[str, pa.Array]],
        offset: int,
        check: Callable[[str, pa.Array, int], None],
        cost: Callable[[str], float],
    ) -> None:
        if not self._lane:
            load = [0.0] * len(self._workers)
            for name in sorted((name for name, _ in columns), key=cost, reverse=True):
                lane = load.index(min(load))
                self._lane[name] = lane
                load[lane] += cost(name)
        work: dict[int, list[tuple[str, pa.Array]]] = {}
        for name, column in columns:
            work.setdefault(self._lane.setdefault(name, len(self._lane) % len(self._workers)), []).append(
                (name, column)
            )
        self._pending.append(
            [self._workers[lane].submit(_run_columns, check, part, offset) for lane, part in work.items()]
        )
        while len(self._pending) > self.MAX_BATCHES_IN_FLIGHT:
            for future in self._pending.popleft():
                future.result()

    def drain(self) -> None:
        """Wait for every submitted batch; re-raises the first error a lane hit."""
        error: BaseException | None = None
        while self._pending:
            for future in self._pending.popleft():
                exc = future.exception()
                error = error or exc
        if error is not None:
            raise error

    def close(self) -> None:
        for worker in self._workers:
            worker.shutdown(wait=True)


def _run_columns(check: Callable[[str, pa.Array, int], None], part: list[tuple[str, pa.Array]], offset: int) -> None:
    for name, column in part:
        check(name, column, offset)


@contextlib.contextmanager
def _lanes(workers: int) -> Iterator[_Lanes | None]:
    if workers <= 1:
        yield None
        return
    lanes = _Lanes(workers)
    try:
        yield lanes
    finally:
        lanes.close()


def _bound(values: pa.Array, bound: float, whole: Callable[[float], int]) -> Any:
    """A range bound to compare ``values`` with: for an int column the whole number that gives the same answer for
    whole values (``ceil`` of a lower bound, ``floor`` of an upper one) as an int64, since Arrow would compare as
    doubles and refuse an int past 2**53; the bound as it is otherwise."""
    if not pa.types.is_integer(values.type):
        return bound
    return pa.scalar(min(max(whole(bound), -(2**63)), 2**63 - 1), pa.int64())


def _read_types(contract: DataContract) -> dict[str, pa.DataType]:
    """How the reader should parse each column where it can (numbers as numbers, categories as
    dictionaries); anything else arrives as text and ``conform`` casts it."""
    types: dict[str, pa.DataType] = {}
    for column in contract.columns:
        if column.type in ("float", "int"):
            types[column.name] = ARROW_TYPES[column.type]
        elif column.type == "category":
            types[column.name] = pa.dictionary(pa.int32(), pa.string())
    return types


def _other_delimiter(header: str) -> tuple[str, list[str]] | None:
    """The delimiter of another CSV dialect that a one-column header holds (the most frequent of
    OTHER_DELIMITERS), and the names it splits into; None if it holds none."""
    delimiter = max(OTHER_DELIMITERS, key=header.count)
    if delimiter not in header:
        return None
    names = next(csv.reader([header], delimiter=delimiter), [])
    return delimiter, [n.strip() for n in names]


def _number_lines(
    findings: list[Finding], skipped: list[int] | None, line_of: Callable[[int], int | None]
) -> list[str]:
    """Give the examples of a CSV's findings the line of the file their row starts on (the header is
    line 1, from ``line_of``, which takes a row counting every data row); notes on those left without.

    A malformed row's ``row`` counts every data row; the other findings' count only well-formed
    rows, so the malformed rows before them are added back: ``skipped`` lists their rows in order,
    or is None when some are unknown (then only the malformed rows get lines).
    """
    unplaced = unknown = False
    for finding in findings:
        for example in finding.examples:
            if example.row is None:
                continue
            row = example.row
            if finding.check != "malformed_rows":
                if skipped is None:
                    unplaced = True
                    continue
                for place in skipped:
                    if place > row:
                        break
                    row += 1
            example.line = line_of(row)
            unknown |= example.line is None
    notes = []
    if unplaced:
        notes.append(
            "the skipped malformed rows cannot all be placed, so the other findings give rows counted from 0 "
            "over the well-formed rows only, not lines"
        )
    if unknown:
        notes.append(
            "some rows' lines in the file are not known (a double quote inside an unquoted value, or a great "
            "many blank lines and values spanning lines before them), so those examples give rows counted from 0, "
            "not lines"
        )
    return notes


def _no_line(row: int) -> int | None:
    return None


def _near_name_hint(name: str, unknown: Sequence[str]) -> str:
    """A fix for a contract column the file lacks when one of its unknown columns is nearly that name (``INCOME``
    or `` age`` for ``income`` / ``age``: names must match exactly); "" when none is."""
    same = [c for c in unknown if c.strip().casefold() == name.casefold()]
    if same:
        return (
            f"the file has {same[0]!r}, which differs only in case or spaces: rename it {name!r} (names match exactly)"
        )
    close = difflib.get_close_matches(name, unknown, n=1, cutoff=0.8)
    return f"did you mean the file's {close[0]!r}? rename it {name!r}, or add the column" if close else ""


def _first_rows(values: pa.Array, wanted: list[Any], offset: int) -> list[int | None]:
    """The row of ``values`` (a batch starting at row ``offset``) that first holds each of ``wanted``: one pass."""
    dictionary = pa.types.is_dictionary(values.type)
    target = values.dictionary if dictionary else values
    positions = pc.index_in(target, value_set=pa.array(wanted, target.type))
    if dictionary:
        positions = pc.take(positions, values.indices)
    found, first = np.unique(positions.fill_null(-1).to_numpy(zero_copy_only=False), return_index=True)
    where = dict(zip(found.tolist(), first.tolist(), strict=True))
    return [offset + where[i] if i in where else None for i in range(len(wanted))]


def _declared_classes(label: ColumnSpec) -> list[str]:
    """The classes a multiclass label column declares, as the training job reads them: its categories, or the whole
    numbers from its min to its max (none past MAX_LABEL_CLASSES, where the balance is not checked)."""
    if label.categories is not None:
        return list(label.categories)
    low, high = label.min, label.max
    if label.type == "int" and low is not None and high is not None:
        first, last = math.ceil(low), math.floor(high)
        if 0 < last - first + 1 <= MAX_LABEL_CLASSES:
            return [str(v) for v in range(first, last + 1)]
    return []


def _label_key(value: Any, as_bool: bool = False) -> str:
    """A label value as the label counts spell it. ``as_bool`` (the positive class of a bool label): every spelling
    the column's cast reads (typecast's, as training reads them) is "true" or "false"; anything else stays as it
    is, so a positive class the label cannot hold is one no row has, never quietly the false class."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if as_bool:
        if isinstance(value, int | float) and value in (0, 1):
            return "true" if value else "false"
        lowered = str(value).strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return "true" if lowered in _TRUE else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def validate(
    source: Source,
    contract: DataContract,
    *,
    reference: DatasetProfile | None = None,
    fmt: Format | None = None,
    name: str | None = None,
    max_keys: int = 2_000_000,
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    top_k: int = DEFAULT_TOP_K,
    threads: int | None = None,
    task: Task = "binary",
) -> ValidationReport:
    """Validate and profile ``source`` (a path, a readable binary stream or an Arrow table).

    ``reference`` (the training profile) supplies the histogram edges so the new profile
    compares with it bin by bin. ``task`` (the spec's) decides which label classes must be present: the
    positive class of a binary model, every declared category of a multiclass label. ``threads`` check columns in parallel (numpy and Arrow release
    the GIL) while the next batch is read and decoded; by default one per CPU this process may
    use, at most 4; 1 does everything on the calling thread.

    Never raises for bad data: every problem with the data is a finding, and bytes that do not
    parse (tabular_io's CorruptInput, or one of UNREADABLE_BYTES) are a ``corrupt_input`` finding.
    Everything else propagates, with no report: the storage SDK's errors (``azure.core``'s
    AzureError: ServiceRequestError, ServiceResponseError, HttpResponseError...), the blob
    overwritten or deleted mid-read (``shared.storage``'s BlobChangedError, BlobMissingError), a
    dropped connection or a timeout (``tabular_io.READ_FAILURES``, which the reader passes through), running out of memory, and bugs of ours (TypeError, AttributeError, KeyError, a plain
    ValueError...), from a column lane too. None of these says anything about the data, and a
    failed report is a verdict: ``validate_blob`` quarantines the batch, which deletes it from
    landing, so a good batch would leave training over a dropped connection. The caller retries,
    or gives up with the blob still in landing.
    """
    started = time.perf_counter()
    workers = threads if threads is not None else min(4, usable_cpus())
    with _lanes(workers) as lanes:
        return _validate(
            source, contract, reference, fmt, name, max_keys, bins, sample_size, top_k, lanes, started, task
        )


def _validate(
    source: Source,
    contract: DataContract,
    reference: DatasetProfile | None,
    fmt: Format | None,
    name: str | None,
    max_keys: int,
    bins: int,
    sample_size: int,
    top_k: int,
    lanes: _Lanes | None,
    started: float,
    task: Task,
) -> ValidationReport:
    checker = _Validator(contract, reference, max_keys, bins, sample_size, top_k, task)
    label = name or (str(source) if isinstance(source, str | Path) else "<input>")  # a file that never opened
    fmt_name: str = fmt or "unknown"
    columns: list[str] = []
    bytes_read = 0
    profile: DatasetProfile | None = None
    skipped: list[int] | None = []  # the rows of the malformed CSV rows, in order; None if not all are known
    line_of: Callable[[int], int | None] = _no_line  # a CSV row's line in the file (rows count malformed ones)
    try:
        with TabularSource(source, fmt=fmt, name=name) as table:
            label, fmt_name, columns = table.name, table.format, table.columns
            line_of = table.line_of
            present = checker.check_schema(columns, csv_header=table.format == "csv")
            # No contract column in the file: a CSV still has one column read, so its rows are counted
            # (Parquet counts rows with no columns read).
            read = present or (columns[:1] if table.format == "csv" else [])
            try:
                batches = table.batches(read, _read_types(contract), threads=1 if lanes is None else None)
                for batch in prefetch(batches) if lanes is not None else batches:
                    checker.batch(batch, lanes)
            finally:
                if lanes is not None:
                    lanes.drain()  # no lane may still change the tallies once the report is built
                bytes_read = table.bytes_read
                other_dialect = any(f.check == "wrong_delimiter" for f in checker.findings)
                places = [r for r, _ in table.malformed.examples if r is not None]
                skipped = sorted(places) if len(places) == table.malformed.count else None
                if table.malformed.count and other_dialect:
                    # Read as comma CSV, a ;-delimited row with decimal commas ("3,5") splits into several
                    # fields: a symptom of wrong_delimiter, not a finding of its own. Each is still a row.
                    checker.rows += table.malformed.count
                elif table.malformed.count:
                    checker.add(
                        Finding(
                            "malformed_rows",
                            "error",
                            f"{table.malformed.count:,} row(s) do not have {len(columns)} fields and were skipped",
                            "fix the export's quoting/delimiters (a comma inside an unquoted value?) and upload again",
                            count=table.malformed.count,
                            examples=[Example(r, t) for r, t in table.malformed.examples],
                        )
                    )
            checker.finish(present)
            profile = checker.profiler.finish()
            if contract.label in present and not checker.label_overflow:
                profile.label_classes = dict(checker.label_classes)
    except CorruptInput as exc:
        where = f" after {checker.rows:,} rows" if checker.rows else ""
        checker.add(Finding("corrupt_input", "error", f"{exc.reason}{where}", exc.remediation))
    except UNREADABLE_BYTES as exc:  # anything else (I/O, storage, memory, bugs) propagates: see validate
        log.exception("validation of %s stopped on bytes that do not parse", label)
        message = (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]
        checker.add(
            Finding(
                "corrupt_input",
                "error",
                f"the batch could not be validated: its bytes do not parse ({type(exc).__name__}: {message})",
                "re-export the file and upload it again; if other readers open it, report it to perennial with the file",
            )
        )
    if fmt_name == "csv":
        checker.notes += _number_lines(checker.findings, skipped, line_of)
    return ValidationReport(
        source=label,
        format=fmt_name,
        rows=checker.rows,
        bytes_read=bytes_read,
        columns=columns,
        findings=checker.findings,
        profile=profile,
        seconds=time.perf_counter() - started,
        notes=checker.notes,
    )
