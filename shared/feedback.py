"""Delayed labels: how a feedback file is read, and whether its labels are classes the model can be judged on.

A feedback file (``feedback/<model>/<name>.csv`` or ``.jsonl``) holds ``request_id``, ``label`` and optionally
``row`` (the row of a multi-row request, default 0). The app reads them from blobs (``BlobStore.iter_feedback``);
``perennial feedback`` reads a local file with the same parser before uploading it, and checks its labels against
the model's spec with :func:`label_problems`, since a label the live checks cannot place is counted wrongly
without a word (a binary label other than the positive class counts as negative).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from shared.platform.scoring import class_text
from shared.spec import BOOL_FALSE, BOOL_TRUE, ColumnSpec, DataContract, label_key
from shared.spec import declared_classes as spec_classes

#: The longest line a feedback file may have (a label line is a few hundred bytes).
MAX_FEEDBACK_LINE = 64 * 1024
#: The file kinds a feedback blob may be (by name).
FEEDBACK_SUFFIXES = (".csv", ".jsonl")
#: The longest request id a label may name (score.py's ids are far shorter).
MAX_REQUEST_ID = 256


@dataclass(frozen=True)
class FeedbackLabel:
    """One delayed label: the true ``label`` (as text) of row ``row`` of the scored request ``request_id``."""

    request_id: str
    label: str
    row: int = 0
    blob: str = ""  # the feedback blob it came from


class FeedbackHeaderError(ValueError):
    """A CSV feedback file without the ``request_id`` and ``label`` columns: none of its rows can be read."""

    def __init__(self, name: str, header: Iterable[str] | None) -> None:
        self.header = list(header or ())
        super().__init__(f"{name} has no request_id and label columns (header: {self.header})")


def feedback_rows(data: IO[bytes], name: str) -> Iterator[FeedbackLabel | None]:
    """The labels of one feedback file, in file order; None for a row without a request id or label, with a bad
    row number, longer than :data:`MAX_FEEDBACK_LINE` or (JSON lines) not a JSON object. ``name`` says the kind
    (``.csv``, else JSON lines) and is recorded on each label. Raises :class:`FeedbackHeaderError` for a CSV file
    without the two columns, ``UnicodeDecodeError`` / ``csv.Error`` for one that is not UTF-8 CSV."""
    text = io.TextIOWrapper(data, encoding="utf-8-sig", newline="")
    if name.endswith(".csv"):
        # Lines past MAX_FEEDBACK_LINE are read past, not held (csv would hold a whole line, however long).
        too_long = 0

        def lines() -> Iterator[str]:
            nonlocal too_long
            for line in bounded_lines(text, MAX_FEEDBACK_LINE):
                if line is None:
                    too_long += 1
                else:
                    yield line

        reader = csv.DictReader(lines())
        if not {"request_id", "label"} <= set(reader.fieldnames or ()):
            raise FeedbackHeaderError(name, reader.fieldnames)
        for record in reader:
            yield feedback_label(record, name)
        yield from [None] * too_long  # skipped like any unreadable row, and counted
        return
    for line in bounded_lines(text, MAX_FEEDBACK_LINE):
        if line is None:  # longer than any label line: skipped, not held in memory
            yield None
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            yield None
            continue
        yield feedback_label(record, name) if isinstance(record, dict) else None


def bounded_lines(text: IO[str], limit: int) -> Iterator[str | None]:
    """The lines of ``text`` (any line end), each one None when it is longer than ``limit`` characters, line end
    aside (read past, a piece at a time, never held whole)."""
    ends = ("\n", "\r")
    while line := text.readline(limit + 2):
        if line.endswith(ends) or len(line) < limit + 2:  # a whole line, or the last one
            yield line if len(line.rstrip("\r\n")) <= limit else None
            continue
        while (rest := text.readline(limit)) and not rest.endswith(ends):
            pass
        yield None


def feedback_label(record: Mapping[str, Any], blob: str) -> FeedbackLabel | None:
    """One feedback row, or None when it lacks a request id or label or has a bad row number."""
    request_id = _text(record.get("request_id"))
    label = _text(record.get("label"))
    raw_row = record.get("row")
    if not request_id or not label or len(request_id) > MAX_REQUEST_ID:
        return None
    if raw_row is None or raw_row == "":
        row = 0
    elif isinstance(raw_row, int) and not isinstance(raw_row, bool) and raw_row >= 0:
        row = raw_row
    else:
        # ASCII digits only: int() would also read "1_0" as 10 and a full-width "１" as 1, and join the label to
        # a row the producer did not mean.
        text = str(raw_row).strip()
        if not (text.isascii() and text.isdigit()):
            return None
        row = int(text)
    return FeedbackLabel(request_id=request_id, label=label, row=row, blob=blob)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value).strip()


# --------------------------------------------------------------------------- checking labels against a model


@dataclass(frozen=True)
class LabelProblem:
    """Labels the live checks would not count as the producer meant: ``count`` rows spelt ``value``."""

    value: str
    count: int
    why: str


def label_problems(labels: Iterable[str], data: DataContract, task: str) -> list[LabelProblem]:
    """The label values of a feedback file that the live checks cannot place, most frequent first.

    Binary: a label counts as positive when it is ``positive_class`` and as negative otherwise, so a value that
    is neither class (``Fraud`` for ``fraud``, ``yes`` for ``1``) would be counted as negative; the negative class
    is known for a bool label (false / 0), and for a label that declares two classes (two categories, or an int
    label's min and max one apart). Multiclass: a label must be the class *index* score.py answers (0 … K-1 over the model's
    sorted classes), so a class spelt by its value, or an index past the declared classes, is not counted."""
    counts = Counter(class_text(label) for label in labels)
    if task == "multiclass":
        return _multiclass_problems(counts, data)
    return _binary_problems(counts, data)


def declared_classes(label: ColumnSpec) -> list[str]:
    """A multiclass label's classes, as the spec spells them, in the order of score.py's class indexes
    (training_jobs/data.py ``_declared_classes``): training sorts its one spelling of each class as text
    (``label_key``: ``true`` is ``1``, and ``10`` comes before ``2``); empty when the label declares none."""
    by_key = {label_key(c): str(c) for c in spec_classes(label) or ()}
    return [by_key[key] for key in sorted(by_key)]


def _binary_problems(counts: Counter[str], data: DataContract) -> list[LabelProblem]:
    label = data.column(data.label)
    as_bool = label.type == "bool"
    positive = binary_spelling(class_text(data.positive_class), as_bool)
    declared = [binary_spelling(class_text(c)) for c in spec_classes(label) or ()]
    if as_bool:
        known = {"0", "1"}
    elif len(set(declared)) == 2 and positive in declared:  # two categories, or an int label's min..max
        known = set(declared)
    else:
        return []  # the negative class is whatever else the data holds: nothing to hold a label against
    shown = sorted(known, key=lambda value: value != positive)
    return [
        LabelProblem(value, count, f"neither class of the label ({' or '.join(shown)}): counted as negative")
        for value, count in counts.most_common()
        if binary_spelling(value, as_bool) not in known
    ]


def _multiclass_problems(counts: Counter[str], data: DataContract) -> list[LabelProblem]:
    classes = declared_classes(data.column(data.label))
    keys = [label_key(c) for c in classes]
    problems = []
    for value, count in counts.most_common():
        if re.fullmatch(r"-?[0-9]+", value):  # an index (ASCII digits only: int() takes "²" for no number)
            index = int(value)
            if index < 0 or (classes and index >= len(classes)):
                problems.append(LabelProblem(value, count, f"no class has index {index} ({len(classes)} classes)"))
            continue
        folded = [k.casefold() for k in keys]
        if label_key(value) in keys:
            why = f"a class spelt by its value: write its index, {keys.index(label_key(value))}"
        elif label_key(value).casefold() in folded:  # "Urgent" for urgent: still a name, in another case
            why = f"a class spelt by its value (in another case): write its index, {folded.index(label_key(value).casefold())}"
        else:
            why = "not a class index (multiclass labels are the index score.py answers)"
        problems.append(LabelProblem(value, count, why))
    return problems


def binary_spelling(text: str, bool_label: bool = False) -> str:
    """``true``/``false`` spelt as ``1``/``0`` (training's canonical_label does the same), else the text: how the
    live checks compare a binary label with the positive class. A bool label also reads every spelling its
    column accepts (``yes``, ``N``, …), as validation reads the data."""
    if bool_label:
        lowered = text.strip().lower()
        return "1" if lowered in BOOL_TRUE else "0" if lowered in BOOL_FALSE else text
    return "1" if text in ("1", "true") else "0" if text in ("0", "false") else text
