"""Scoring records, pure helpers: request ids, payload rows, predictions, and the two on-disk shapes.

Used by the local scoring server (``devhost/mlservice/router.py`` writes one JSON line per request to
``metrics/<deployment>.jsonl``), by :class:`~shared.platform.local.LocalPlatform` (reads those lines)
and by :class:`~shared.platform.azureml.AzureMLPlatform` (reads Azure ML's data collector output:
``modelDataCollector/<endpoint>/<deployment>/<collection>/<yyyy>/<MM>/<dd>/<HH>/<instance>.jsonl`` on the
workspace blob datastore, one JSON event per line, rows in ``data``).

Nothing here does I/O. Bounds keep the logs small: the inputs of at most :data:`MAX_INPUT_ROWS` rows per
request, scalar values only, strings cut to :data:`MAX_TEXT` characters, at most :data:`MAX_COLUMNS`
columns per row.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from shared.platform import MAX_INPUT_ROWS, ScoringRecord

#: Client headers that carry a request id, in order of preference (Azure ML honours both).
REQUEST_ID_HEADERS = ("x-ms-client-request-id", "x-request-id")
#: The response header that names the request id, as Azure ML online endpoints answer.
RESPONSE_REQUEST_ID_HEADER = "x-request-id"
#: A request id we accept from a client: 1-128 ASCII letters, digits and . _ : - (the set score.py keeps on Azure, and
#: that `perennial score` / `perennial feedback` accept: tests/cli/test_feedback_command.py holds the three equal).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_TEXT = 256
MAX_COLUMNS = 200
#: Predictions kept per request (score.py refuses more than 10,000 rows anyway).
MAX_PREDICTIONS = 10_000

Scalar = str | int | float | bool | None


def valid_request_id(value: object) -> bool:
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


def request_id_from(get_header: Callable[[str], str | None]) -> str:
    """The client's request id (``x-ms-client-request-id``, else ``x-request-id``) if it is a sane token,
    else a new uuid4. ``get_header`` looks a header up by name (case-insensitively, as HTTP libraries do)."""
    for name in REQUEST_ID_HEADERS:
        value = (get_header(name) or "").strip()
        if valid_request_id(value):
            return value
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- payloads and answers


def payload_rows(document: object) -> list[Any]:
    """The rows of a scoring request in any envelope score.py accepts: ``{"data": [...]}``,
    ``{"input_data": [...]}`` or the split form ``{"columns": [...], "data": [[...]]}``. Not a payload: []."""
    if not isinstance(document, Mapping):
        return []
    key = "data" if "data" in document else "input_data" if "input_data" in document else None
    if key is None:
        return []
    rows = document[key]
    if isinstance(rows, Mapping) and isinstance(rows.get("columns"), list) and isinstance(rows.get("data"), list):
        columns = rows["columns"]
        return [dict(zip(columns, r, strict=False)) if isinstance(r, list) else r for r in rows["data"]]
    return rows if isinstance(rows, list) else []


def _scalar(value: object) -> Scalar:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:MAX_TEXT]
    return None  # nested values are not features the contract can describe


def bounded_inputs(rows: Sequence[Any], max_rows: int = MAX_INPUT_ROWS) -> list[dict[str, Scalar]]:
    """The first ``max_rows`` rows as ``{column: scalar}`` (non-object rows become ``{}``), bounded in size."""
    kept: list[dict[str, Scalar]] = []
    for row in rows[:max_rows]:
        if isinstance(row, Mapping):
            kept.append({str(k)[:MAX_TEXT]: _scalar(v) for k, v in list(row.items())[:MAX_COLUMNS]})
        else:
            kept.append({})
    return kept


def class_text(value: object) -> str:
    """One spelling of a class for comparisons: 1, 1.0, "1" -> "1"; True/"true" -> "true"; else the text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if math.isfinite(value) and value.is_integer() else repr(value)
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


def _probability(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and 0.0 <= number <= 1.0 else None


def response_predictions(document: object) -> tuple[list[str], list[float | None]]:
    """(class per row, probability per row) from score.py's answer ``{"predictions": [{"class", "probability"}]}``
    (a bare list of predictions, or of classes, is accepted too)."""
    items = document.get("predictions") if isinstance(document, Mapping) else document
    if not isinstance(items, list):
        return [], []
    classes: list[str] = []
    probabilities: list[float | None] = []
    for item in items[:MAX_PREDICTIONS]:
        if isinstance(item, Mapping):
            value = item.get("class", item.get("prediction"))
            if value is None:
                continue
            classes.append(class_text(value))
            probabilities.append(_probability(item.get("probability")))
        elif item is not None and not isinstance(item, list | dict):
            classes.append(class_text(item))
            probabilities.append(None)
    return classes, probabilities


# --------------------------------------------------------------------------- the local router's log lines


def router_line(
    *,
    request_id: str,
    deployment: str,
    at: float,
    latency_ms: float,
    status: int,
    mirrored: bool,
    request: bytes,
    response: bytes,
) -> dict[str, Any]:
    """One line of ``metrics/<deployment>.jsonl``. ``t``/``ms``/``status``/``classes``/``mirror`` are what the
    health metrics read; ``id``/``rows``/``inputs``/``probabilities`` are the scoring record."""
    try:
        rows = payload_rows(json.loads(request))
    except (ValueError, UnicodeDecodeError):
        rows = []
    classes: list[str] = []
    probabilities: list[float | None] = []
    if status == 200:
        try:
            classes, probabilities = response_predictions(json.loads(response))
        except (ValueError, UnicodeDecodeError):
            classes, probabilities = [], []
    return {
        "t": at,
        "ms": round(latency_ms, 3),
        "status": status,
        "classes": classes,
        "mirror": mirrored,
        "id": request_id,
        "deployment": deployment,
        "rows": len(rows),
        "inputs": bounded_inputs(rows),
        "probabilities": probabilities,
    }


def record_from_router_line(line: Mapping[str, Any], deployment: str, include_inputs: bool) -> ScoringRecord | None:
    """A router log line as a record; None for lines written before request ids were recorded."""
    request_id = line.get("id")
    if not isinstance(request_id, str) or not request_id:
        return None
    classes = tuple(str(c) for c in line.get("classes") or ())
    raw_probabilities = line.get("probabilities") or ()
    probabilities = tuple(_probability(p) for p in raw_probabilities) if raw_probabilities else ()
    inputs = tuple(dict(r) for r in line.get("inputs") or () if isinstance(r, Mapping)) if include_inputs else ()
    return ScoringRecord(
        request_id=request_id,
        time=datetime.fromtimestamp(float(line["t"]), UTC),
        deployment=str(line.get("deployment") or deployment),
        status=int(line["status"]),
        latency_ms=float(line["ms"]),
        mirrored=bool(line.get("mirror")),
        rows=int(line.get("rows") or len(classes)),
        predictions=classes,
        probabilities=probabilities,
        inputs=inputs,
    )


# --------------------------------------------------------------------------- Azure ML's data collector

#: Where Azure ML's data collector writes by default, inside the workspace blob datastore.
COLLECTOR_ROOT = "modelDataCollector"
INPUTS_COLLECTION = "model_inputs"
OUTPUTS_COLLECTION = "model_outputs"
#: The column score.py adds to both collected DataFrames so rows can be joined with labels: the collector
#: batches requests that arrive close together into one event under one correlation id.
REQUEST_ID_COLUMN = "request_id"
CLASS_COLUMNS = ("class", "prediction")
PROBABILITY_COLUMN = "probability"


def collector_prefixes(endpoint: str, deployment: str, collection: str, start: datetime, end: datetime) -> list[str]:
    """One listing prefix per UTC day the window touches (day prefixes cover the Minute/Hour/Day rolling rates)."""
    base = f"{COLLECTOR_ROOT}/{endpoint}/{deployment}/{collection}/"
    day = start.astimezone(UTC).date()
    last = end.astimezone(UTC).date()
    prefixes: list[str] = []
    while day <= last:
        prefixes.append(f"{base}{day:%Y/%m/%d}/")
        day += timedelta(days=1)
    return prefixes


@dataclass(frozen=True)
class CollectorEvent:
    """One collected event: its time, its correlation id and its rows (a DataFrame in records form)."""

    time: datetime
    correlation_id: str
    rows: tuple[Mapping[str, Any], ...]


def _event_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _event_rows(data: object) -> tuple[Mapping[str, Any], ...]:
    if isinstance(data, list):
        return tuple(r for r in data if isinstance(r, Mapping))
    if isinstance(data, Mapping):  # a DataFrame logged in "dict" orientation: {column: [values]}
        columns = {k: v for k, v in data.items() if isinstance(v, list)}
        if columns and len(columns) == len(data):
            length = min(len(v) for v in columns.values())
            return tuple({k: v[i] for k, v in columns.items()} for i in range(length))
        return (data,)
    return ()


def parse_collector_line(line: str | bytes) -> list[CollectorEvent]:
    """The events on one JSONL line (an object, or an array of objects); malformed lines give []."""
    try:
        document = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return []
    events: list[CollectorEvent] = []
    for item in document if isinstance(document, list) else [document]:
        if not isinstance(item, Mapping):
            continue
        when = _event_time(item.get("time"))
        if when is None:
            continue
        correlation = item.get("correlationid") or item.get("xrequestid") or item.get("id") or ""
        events.append(CollectorEvent(when, str(correlation), _event_rows(item.get("data"))))
    return events


T = TypeVar("T")


def sample_priority(key: str) -> int:
    """A request's rank for :class:`RequestSample`: a hash of its key, so every reader, pass and retry
    keeps the same requests, and which ones are kept says nothing about when they were scored."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class _Negated:
    """A key that sorts backwards, so the heap's top is the largest (priority, key) kept."""

    key: str

    def __lt__(self, other: _Negated) -> bool:
        return self.key > other.key


class RequestSample(Generic[T]):
    """At most ``limit`` requests of a window, a uniform sample of them when more arrive.

    A bottom-k sample: the ``limit`` keys with the smallest :func:`sample_priority` are kept. Unlike
    keeping the first ``limit`` read, it spreads over the whole window (a drift check on a busy endpoint
    would otherwise see only the window's first hour), it needs no second pass, and it is the same
    sample whatever order the records are read in, so a request's input and output events, read in
    separate passes, are kept or dropped together. Memory: ``limit`` values.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: dict[str, T] = {}
        self._largest: list[tuple[int, _Negated]] = []  # max-heap of the kept (priority, key), negated
        self.truncated = False

    def get_or_add(self, key: str, new: T) -> T | None:
        """The kept value of ``key``; else ``new``, kept, if the key gets a place; else None."""
        if key in self.kept:
            return self.kept[key]
        rank = (sample_priority(key), key)
        if len(self.kept) < self.limit:
            heapq.heappush(self._largest, (-rank[0], _Negated(key)))
        else:
            self.truncated = True
            if not self._largest or rank >= (-self._largest[0][0], self._largest[0][1].key):
                return None  # ranks after every kept key (or limit 0): never kept, now or later
            _, evicted = heapq.heapreplace(self._largest, (-rank[0], _Negated(key)))
            del self.kept[evicted.key]
        self.kept[key] = new
        return new


@dataclass
class _Partial:
    time: datetime
    inputs: list[dict[str, Scalar]] = field(default_factory=list)
    input_rows: int = 0
    classes: list[str] = field(default_factory=list)
    probabilities: list[float | None] = field(default_factory=list)
    has_outputs: bool = False


class CollectedRequests:
    """Folds collected input and output events into one record per request id; beyond ``limit`` requests,
    a uniform sample of them (:class:`RequestSample`)."""

    def __init__(self, start: datetime, end: datetime, limit: int) -> None:
        self.start, self.end, self.limit = start, end, limit
        self._sample: RequestSample[_Partial] = RequestSample(limit)

    @property
    def truncated(self) -> bool:
        return self._sample.truncated

    def _groups(self, event: CollectorEvent) -> Iterator[tuple[str, list[Mapping[str, Any]]]]:
        if not self.start <= event.time < self.end:
            return
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for row in event.rows:
            own = row.get(REQUEST_ID_COLUMN)
            key = own if valid_request_id(own) else event.correlation_id
            if key:
                groups.setdefault(str(key), []).append(row)
        yield from groups.items()

    def _partial(self, request_id: str, when: datetime) -> _Partial | None:
        partial = self._sample.get_or_add(request_id, _Partial(when))
        if partial is not None:
            partial.time = min(partial.time, when)
        return partial

    def add_inputs(self, events: Iterable[CollectorEvent]) -> None:
        for event in events:
            for request_id, rows in self._groups(event):
                partial = self._partial(request_id, event.time)
                if partial is None:
                    continue
                room = MAX_INPUT_ROWS - len(partial.inputs)
                cleaned = [{k: v for k, v in r.items() if k != REQUEST_ID_COLUMN} for r in rows[: max(room, 0)]]
                partial.inputs.extend(bounded_inputs(cleaned))
                partial.input_rows += len(rows)

    def add_outputs(self, events: Iterable[CollectorEvent]) -> None:
        for event in events:
            for request_id, rows in self._groups(event):
                partial = self._partial(request_id, event.time)
                if partial is None:
                    continue
                partial.has_outputs = True
                for row in rows:
                    value = next((row[c] for c in CLASS_COLUMNS if row.get(c) is not None), None)
                    if value is None or len(partial.classes) >= MAX_PREDICTIONS:
                        continue
                    partial.classes.append(class_text(value))
                    partial.probabilities.append(_probability(row.get(PROBABILITY_COLUMN)))

    def records(self, deployment: str, include_inputs: bool) -> tuple[ScoringRecord, ...]:
        ordered = sorted(self._sample.kept.items(), key=lambda item: (item[1].time, item[0]))
        return tuple(
            ScoringRecord(
                request_id=request_id,
                time=p.time,
                deployment=deployment,
                # The collector logs only what score.py collected: outputs mean it scored; inputs alone say nothing.
                status=200 if p.has_outputs else None,
                rows=max(p.input_rows, len(p.classes)),
                predictions=tuple(p.classes),
                probabilities=tuple(p.probabilities) if any(x is not None for x in p.probabilities) else (),
                inputs=tuple(p.inputs) if include_inputs else (),
            )
            for request_id, p in ordered
        )
