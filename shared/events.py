"""Every inbound event shape → one normalised :class:`Trigger`.

Accepted shapes (see docs/events.md for the published schemas):

- ``Microsoft.Storage.BlobCreated`` in the Event Grid schema or CloudEvents 1.0, for
  ``landing/<model>/…`` only (Data Lake Gen2: only ``FlushWithClose`` means the file is complete)
- Azure ML ``DatasetDriftDetected``, ``RunStatusChanged``, ``RunCompleted``, ``ModelRegistered``,
  ``ModelDeployed``
- Azure Monitor alerts in the common alert schema (Action Group webhook, HTTP)
- Perennial's own ``Perennial.*`` events (``shared/publish.py``)
- manual HTTP requests ``{"model": "fraud", "reason": "…"}``

The SDKs' ``from_dict`` does not validate, so we do: an unknown or malformed event raises
:class:`EventError` (or a subclass) carrying the field and a hint, which HTTP triggers turn
into a 400 problem response and Event Grid triggers log and acknowledge (a malformed
event never gets better by redelivery). Nothing else is ever raised.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import azure.functions as func

from shared.blobpaths import (
    BlobNameError,
    canonical_blob_url,
    quoted_etag,
    split_blob_url,
    subject_blob,
    validate_blob_name,
)
from shared.publish import EventDataError, PerennialEventType, parse_perennial_data

if TYPE_CHECKING:
    from shared.registry import Run

TriggerKind = Literal[
    "blob_created",
    "drift_alert",
    "run_status",
    "monitor_alert",
    "retrain_requested",
    "manual",
    "perennial_event",
    "model_event",
]

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
_ML = "Microsoft.MachineLearningServices."
DRIFT = _ML + "DatasetDriftDetected"
RUN_STATUS = _ML + "RunStatusChanged"
RUN_COMPLETED = _ML + "RunCompleted"
ML_MODEL_REGISTERED = _ML + "ModelRegistered"
ML_MODEL_DEPLOYED = _ML + "ModelDeployed"
COMMON_ALERT_SCHEMA = "azureMonitorCommonAlertSchema"

#: BlobCreated ``api`` values that mean the blob is complete. Gen2's CreateFile is not: wait for FlushWithClose.
COMPLETE_BLOB_APIS = frozenset({"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"})
#: Azure ML run statuses after which nothing changes.
TERMINAL_RUN_STATUSES = frozenset({"completed", "failed", "canceled", "notresponding", "paused"})
#: The job/run tag that names the Perennial model (set by shared/platform when it submits jobs).
MODEL_TAG = "perennial_model"
#: Largest event body we parse (Event Grid's own limit is 1 MB per event).
MAX_BODY_BYTES = 1024 * 1024
#: Longest free text a person's request may carry (a reason, a comment): it is stored with the run and shown in
#: every listing of it.
MAX_TEXT_CHARS = 1000
#: Longest name or id a request may carry (requested_by, request_id, an Idempotency-Key).
MAX_NAME_CHARS = 200
LANDING = "landing"


class EventError(ValueError):
    """An inbound event is unknown or malformed. ``field`` is the offending field; ``hint`` the fix.

    HTTP triggers answer 400 with these; Event Grid triggers log and acknowledge.
    """

    status = 400

    def __init__(self, message: str, field: str, hint: str) -> None:
        self.field = field
        self.hint = hint
        self.message = message
        super().__init__(f"{message} ({hint})")


class UnknownEventTypeError(EventError):
    """The event type is not one Perennial subscribes to."""


class UnknownModelError(EventError):
    """The event is about a model that has no spec under models/."""


# --------------------------------------------------------------------------- the normalised trigger


@dataclass(frozen=True)
class KnownModels:
    """What the parser checks model names against: spec names, and online endpoint → model."""

    names: frozenset[str]
    endpoints: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, known: KnownModels | Collection[str]) -> KnownModels:
        return known if isinstance(known, KnownModels) else cls(frozenset(known))

    @classmethod
    def from_specs(cls, specs: Mapping[str, Any]) -> KnownModels:
        """From ``Runtime.specs`` (name → ModelSpec); endpoints map back to their model."""
        return cls(frozenset(specs), {spec.endpoint_name: name for name, spec in specs.items()})

    def endpoint_model(self, endpoint: str) -> str | None:
        """The model served by ``endpoint``, the name compared without case (Azure Monitor writes resource ids in
        lower case; Azure names are case-insensitive): the spec's spelling of the model, or None."""
        if endpoint in self.endpoints:
            return self.endpoints[endpoint]
        folded = endpoint.casefold()
        matches = sorted(model for name, model in self.endpoints.items() if name.casefold() == folded)
        return matches[0] if matches else None


@dataclass(frozen=True)
class BlobIdentity:
    """One version of one blob, as the event reported it (a blob is identified by url + eTag)."""

    url: str
    etag: str
    size: int
    container: str
    name: str
    api: str
    sequencer: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class AlertEssentials:
    """The parts of an Azure Monitor common-schema alert a retrain decision needs."""

    alert_id: str
    rule: str
    severity: str
    signal_type: str
    condition: str  # Fired | Resolved
    fired_at: datetime | None
    target_ids: tuple[str, ...]
    description: str = ""
    metric_name: str | None = None
    metric_value: float | None = None
    threshold: float | None = None
    operator: str | None = None


@dataclass(frozen=True)
class Trigger:
    """Why a retrain may start, from any source. ``actionable`` is False for record-only events."""

    kind: TriggerKind
    model: str
    reason: str
    event_id: str
    event_type: str
    actionable: bool = True
    source: str = ""
    subject: str = ""
    occurred_at: datetime | None = None
    blob: BlobIdentity | None = None
    alert: AlertEssentials | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        """Equal for redeliveries of the same fact: a blob version, or an event id (+ alert condition)."""
        if self.blob is not None:
            return f"blob|{self.blob.url}|{self.blob.etag}"
        if self.alert is not None:
            return f"alert|{self.alert.alert_id}|{self.alert.condition}"
        return f"{self.kind}|{self.event_id}"

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form (orchestration inputs, logs)."""
        out = asdict(self)
        for holder in (out, out.get("alert") or {}):
            for key in ("occurred_at", "fired_at"):
                if isinstance(holder.get(key), datetime):
                    holder[key] = holder[key].isoformat()
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Trigger:
        data = dict(raw)
        if data.get("occurred_at"):
            data["occurred_at"] = datetime.fromisoformat(data["occurred_at"])
        if data.get("blob"):
            data["blob"] = BlobIdentity(**data["blob"])
        if data.get("alert"):
            alert = dict(data["alert"])
            alert["fired_at"] = datetime.fromisoformat(alert["fired_at"]) if alert.get("fired_at") else None
            alert["target_ids"] = tuple(alert.get("target_ids", ()))
            data["alert"] = AlertEssentials(**alert)
        return cls(**data)


# --------------------------------------------------------------------------- field helpers


def _get(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj or obj[key] is None:
        raise EventError(
            f"{where}{key} is missing", f"{where}{key}", "the event must carry it; docs/events.md lists the fields"
        )
    return obj[key]


def _str(obj: Mapping[str, Any], key: str, where: str = "", allow_empty: bool = False) -> str:
    value = _get(obj, key, where)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise EventError(
            f"{where}{key} must be a non-empty string, got {type(value).__name__}", f"{where}{key}", "send a string"
        )
    return value


def _opt_str(obj: Mapping[str, Any], key: str, where: str = "") -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{where}{key} must be a string", f"{where}{key}", "send a string or leave it out")
    return value


def _unicode_only(value: Any, path: str) -> None:
    """Refuse a document with text that is not Unicode anywhere in it (JSON's ``\\ud800``, a key included): it
    would reach a run's reason or details, which the registry and every log line must encode as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EventError(
                f"{path} is not valid Unicode text", path, "send UTF-8 text without lone surrogates"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _unicode_only(key, f"a key of {path or 'the body'}")
            _unicode_only(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _unicode_only(item, f"{path}[{index}]")


def bounded_text(value: str | None, field: str, limit: int) -> str | None:
    """``value`` when it is text (encodable as UTF-8: JSON's ``\\ud800`` and a header's non-UTF-8 bytes are not)
    of at most ``limit`` characters; an :class:`EventError` naming ``field`` otherwise."""
    if value is None:
        return None
    if len(value) > limit:
        raise EventError(f"{field} is {len(value):,} characters long", field, f"send at most {limit:,} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError(
            f"{field} is not valid Unicode text", field, "send UTF-8 text without lone surrogates"
        ) from None
    return value


#: The largest whole number an event may carry: JSON numbers are exact below 2**53, and Azure's largest blob
#: (about 190 TiB) is far below it. A larger one cannot be stored in the run registry (Table storage's Int64).
MAX_EVENT_INT = 2**53


def _int(obj: Mapping[str, Any], key: str, where: str = "") -> int:
    value = _get(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EVENT_INT:
        raise EventError(
            f"{where}{key} must be a whole number from 0 to 2**53", f"{where}{key}", "send the blob's size, e.g. 1024"
        )
    return value


def _number(obj: Mapping[str, Any], key: str, where: str = "") -> float:
    value = _get(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EventError(f"{where}{key} must be a finite number", f"{where}{key}", "send e.g. 0.42")
    return float(value)


def _opt_number(obj: Mapping[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(f"{where} must be a JSON object", where, "send an object")
    return value


def _time(value: Any, where: str, required: bool = True) -> datetime | None:
    if value is None and not required:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise EventError(f"{where} must be an ISO-8601 time", where, "send e.g. 2026-11-22T10:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EventError(
            f"{where}={value[:64]!r} is not an ISO-8601 time", where, "send e.g. 2026-11-22T10:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _model(name: str, known: KnownModels, where: str) -> str:
    if name not in known.names:
        raise UnknownModelError(
            f"{where}={name[:64]!r} is not a known model",
            where,
            f"add models/{name[:64]}.yaml or use one of: {', '.join(sorted(known.names)) or 'none'}",
        )
    return name


def _prefixed_model(name: str, known: KnownModels) -> str | None:
    """The longest known model ``m`` with ``name == m`` or ``name`` starting ``m-`` / ``m_`` (naming convention),
    compared without case (Azure Monitor lower-cases the resource ids it reports; Azure names ignore case); a
    match in the same case wins a tie. The spec's spelling is returned."""
    folded = name.casefold()
    matches = [
        m for m in known.names if folded == m.casefold() or folded.startswith((f"{m.casefold()}-", f"{m.casefold()}_"))
    ]
    if not matches:
        return None
    return max(matches, key=lambda m: (len(m), name == m or name.startswith((f"{m}-", f"{m}_")), m))


# --------------------------------------------------------------------------- envelopes


@dataclass(frozen=True)
class _Envelope:
    id: str
    type: str
    source: str
    subject: str
    time: datetime | None
    data_version: str | None
    data: Any


def _load_json(body: str | bytes) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise EventError(f"the body is {len(body)} bytes", "body", f"events are at most {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise EventError("the body is not valid JSON", "body", "send a JSON object") from None


def _envelope_text(value: Any, field: str, required: bool = True) -> str:
    """An envelope field the worker handed over as it came: the binding types do not check them."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise EventError(f"{field} must be a non-empty string, got {value!r:.40}", field, "send a string")
    return value


def _envelope(event: Any) -> _Envelope:
    if isinstance(event, func.EventGridEvent):
        return _Envelope(
            id=_envelope_text(event.id, "id"),
            type=_envelope_text(event.event_type, "eventType"),
            source=_envelope_text(event.topic, "topic", required=False),
            subject=_envelope_text(event.subject, "subject", required=False),
            time=event.event_time,
            data_version=event.data_version,
            data=event.get_json(),
        )
    if isinstance(event, func.CloudEvent):
        return _Envelope(
            id=_envelope_text(event.id, "id"),
            type=_envelope_text(event.type, "type"),
            source=_envelope_text(event.source, "source", required=False),
            subject=_envelope_text(event.subject, "subject", required=False),
            time=event.time,
            data_version=event.extension_attrs.get("dataversion"),
            data=event.get_json(),
        )
    if isinstance(event, str | bytes | bytearray):
        event = _load_json(bytes(event) if isinstance(event, bytearray) else event)
    if isinstance(event, list):
        raise EventError("got a list of events", "body", "pass one event at a time (Event Grid delivers them singly)")
    raw = _obj(event, "event")
    if "specversion" in raw:
        if raw["specversion"] != "1.0":
            raise EventError("specversion must be '1.0'", "specversion", "send CloudEvents 1.0")
        if "data_base64" in raw:
            raise EventError("binary CloudEvents data is not supported", "data_base64", "send JSON data")
        return _Envelope(
            id=_str(raw, "id"),
            type=_str(raw, "type"),
            source=_str(raw, "source"),
            subject=_opt_str(raw, "subject") or "",
            time=_time(raw.get("time"), "time", required=False),
            data_version=_opt_str(raw, "dataversion"),
            data=raw.get("data"),
        )
    if "eventType" in raw:
        return _Envelope(
            id=_str(raw, "id"),
            type=_str(raw, "eventType"),
            source=_opt_str(raw, "topic") or "",
            subject=_str(raw, "subject"),
            time=_time(_get(raw, "eventTime", ""), "eventTime"),
            data_version=_opt_str(raw, "dataVersion"),
            data=_get(raw, "data", ""),
        )
    raise EventError(
        "the object is neither an Event Grid event nor a CloudEvent",
        "eventType",
        "send eventType/subject/data (Event Grid schema) or specversion/type/source (CloudEvents)",
    )


# --------------------------------------------------------------------------- per type


def _blob_created(env: _Envelope, known: KnownModels) -> Trigger:
    data = _obj(env.data, "data")
    try:
        container, name = subject_blob(env.subject)
        url = _str(data, "url", "data.")
        url_container, url_name = split_blob_url(url)
    except BlobNameError as exc:
        raise EventError(exc.message, exc.field if exc.field != "blob" else "subject", exc.hint) from None
    if container != LANDING:
        raise EventError(
            f"the blob is in container {container!r}, not {LANDING!r}",
            "subject",
            f"subscribe with subjectBeginsWith /blobServices/default/containers/{LANDING}/",
        )
    if (url_container, url_name) != (container, name):
        raise EventError("data.url and subject name different blobs", "data.url", "the url must be the subject's blob")
    try:
        path = validate_blob_name(name, known.names, LANDING)
    except BlobNameError as exc:
        error = UnknownModelError if exc.field == "model" else EventError
        raise error(exc.message, "subject", exc.hint) from None
    api = _str(data, "api", "data.")
    etag = _str(data, "eTag", "data.")
    if not etag.strip(' "'):
        raise EventError("data.eTag is blank", "data.eTag", "send the blob's eTag, e.g. 0x8DCF00A1B2C3D4E")
    blob = BlobIdentity(
        url=canonical_blob_url(url),  # a Data Lake event's .dfs. url names the blob the listing calls .blob.
        etag=quoted_etag(etag),
        size=_int(data, "contentLength", "data."),
        container=container,
        name=name,
        api=api,
        sequencer=_opt_str(data, "sequencer", "data."),
        content_type=_opt_str(data, "contentType", "data."),
    )
    complete = api in COMPLETE_BLOB_APIS
    reason = (
        f"new data {container}/{name} ({blob.size} bytes)"
        if complete
        else f"ignored {container}/{name}: api {api} does not complete a file (wait for FlushWithClose)"
    )
    return Trigger(
        kind="blob_created",
        model=path.model,
        reason=reason,
        event_id=env.id,
        event_type=env.type,
        actionable=complete,
        source=env.source,
        subject=env.subject,
        occurred_at=env.time,
        blob=blob,
    )


def _drift(env: _Envelope, known: KnownModels) -> Trigger:
    data = _obj(env.data, "data")
    monitor = _str(data, "DataDriftName", "data.")
    model = _prefixed_model(monitor, known)
    if model is None:
        raise UnknownModelError(
            f"data.DataDriftName={monitor[:64]!r} names no known model",
            "data.DataDriftName",
            "name the drift monitor <model> or <model>-<anything>",
        )
    coefficient = _number(data, "DriftCoefficient", "data.")
    return Trigger(
        kind="drift_alert",
        model=model,
        reason=f"Azure ML drift monitor {monitor} reported drift coefficient {coefficient:.3f}",
        event_id=env.id,
        event_type=env.type,
        source=env.source,
        subject=env.subject,
        occurred_at=env.time,
        details={
            "drift_coefficient": coefficient,
            "monitor": monitor,
            "run_id": _str(data, "RunId", "data."),
            "base_dataset_id": _opt_str(data, "BaseDatasetId", "data."),
            "target_dataset_id": _opt_str(data, "TargetDatasetId", "data."),
            "start_time": _opt_str(data, "StartTime", "data."),
            "end_time": _opt_str(data, "EndTime", "data."),
        },
    )


def _run_status(env: _Envelope, known: KnownModels) -> Trigger:
    data = _obj(env.data, "data")
    run_id = _str(data, "runId", "data.")
    tags = data.get("runTags")
    tags = {} if tags is None else tags
    if not isinstance(tags, dict):
        raise EventError("data.runTags must be an object", "data.runTags", "send tags as an object")
    tagged = tags.get(MODEL_TAG)
    experiment = _opt_str(data, "experimentName", "data.")
    if isinstance(tagged, str):
        model = _model(tagged, known, f"data.runTags.{MODEL_TAG}")
    elif experiment is not None and experiment in known.names:
        model = experiment
    else:
        raise UnknownModelError(
            f"run {run_id[:64]} carries no {MODEL_TAG} tag and its experiment is not a model",
            f"data.runTags.{MODEL_TAG}",
            f"Perennial's jobs are tagged {MODEL_TAG}=<model>; filter other runs out of the subscription",
        )
    status = "Completed" if env.type == RUN_COMPLETED else _str(data, "runStatus", "data.")
    terminal = status.lower() in TERMINAL_RUN_STATUSES
    return Trigger(
        kind="run_status",
        model=model,
        reason=f"Azure ML run {run_id} is {status}",
        event_id=env.id,
        event_type=env.type,
        actionable=terminal,
        source=env.source,
        subject=env.subject,
        occurred_at=env.time,
        details={"run_id": run_id, "status": status, "experiment": experiment, "run_type": data.get("runType")},
    )


def _ml_model_event(env: _Envelope, known: KnownModels) -> Trigger:
    data = _obj(env.data, "data")
    if env.type == ML_MODEL_REGISTERED:
        model = _model(_str(data, "ModelName", "data."), known, "data.ModelName")
        details: dict[str, Any] = {"version": str(_get(data, "ModelVersion", "data."))}
        reason = f"Azure ML registered {model}:{details['version']}"
    else:
        service = _str(data, "ServiceName", "data.")
        model = known.endpoint_model(service) or _prefixed_model(service, known) or ""
        _model(model or service, known, "data.ServiceName")
        details = {"service": service}
        reason = f"Azure ML deployed to {service}"
    return Trigger(
        kind="model_event",
        model=model,
        reason=reason,
        event_id=env.id,
        event_type=env.type,
        actionable=False,
        source=env.source,
        subject=env.subject,
        occurred_at=env.time,
        details=details,
    )


def _perennial(env: _Envelope, known: KnownModels) -> Trigger:
    try:
        data = parse_perennial_data(env.type, env.data_version, env.data)
    except EventDataError as exc:
        error = UnknownEventTypeError if exc.field == "eventType" else EventError
        raise error(exc.message, exc.field, exc.hint) from None
    model = _model(data.model, known, "data.model")
    kind: TriggerKind = "perennial_event"
    actionable = False
    reason = f"{env.type} for {model}"
    if env.type == PerennialEventType.RETRAIN_REQUESTED:
        kind, actionable = "retrain_requested", True
        reason = str(getattr(data, "reason", reason))
    elif env.type == PerennialEventType.DRIFT_DETECTED:
        kind, actionable = "drift_alert", True
        reason = f"drift: {getattr(data, 'method', '?')} {getattr(data, 'score', 0.0):.3f} > {getattr(data, 'threshold', 0.0)}"
    return Trigger(
        kind=kind,
        model=model,
        reason=reason,
        event_id=env.id,
        event_type=env.type,
        actionable=actionable,
        source=env.source,
        subject=env.subject,
        occurred_at=env.time,
        details=data.model_dump(mode="json"),
    )


# --------------------------------------------------------------------------- entry points


def parse_event(event: Any, known: KnownModels | Collection[str]) -> Trigger:
    """An Event Grid-delivered event (func.EventGridEvent / func.CloudEvent / dict / JSON) → Trigger.

    Raises only :class:`EventError` (and its subclasses).
    """
    models = KnownModels.of(known)
    try:
        env = _envelope(event)
        for name, text in (("id", env.id), ("eventType", env.type), ("topic", env.source), ("subject", env.subject)):
            _unicode_only(text, name)
        _unicode_only(env.data, "data")
        if env.type == BLOB_CREATED:
            return _blob_created(env, models)
        if env.type == DRIFT:
            return _drift(env, models)
        if env.type in (RUN_STATUS, RUN_COMPLETED):
            return _run_status(env, models)
        if env.type in (ML_MODEL_REGISTERED, ML_MODEL_DEPLOYED):
            return _ml_model_event(env, models)
        if env.type.startswith("Perennial."):
            return _perennial(env, models)
    except EventError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as exc:
        # A shape we did not foresee: still a bad event, never a crash.
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise EventError(
            f"the event is malformed ({type(exc).__name__}{': ' + detail if detail else ''})",
            "event",
            "compare with docs/events.md",
        ) from None
    raise UnknownEventTypeError(
        f"event type {env.type[:100]!r} is not handled",
        "eventType",
        "subscribe only BlobCreated, Azure ML drift/run/model events and Perennial.* to this function",
    )


def _monitor_alert(raw: dict[str, Any], known: KnownModels) -> Trigger:
    data = _obj(_get(raw, "data", ""), "data")
    ess = _obj(_get(data, "essentials", "data."), "data.essentials")
    w = "data.essentials."
    alert_id = _str(ess, "alertId", w)
    rule = _str(ess, "alertRule", w)
    severity = _str(ess, "severity", w)
    if severity not in ("Sev0", "Sev1", "Sev2", "Sev3", "Sev4"):
        raise EventError(f"{w}severity={severity[:16]!r} is not Sev0-Sev4", f"{w}severity", "send Sev0..Sev4")
    condition = _str(ess, "monitorCondition", w)
    if condition not in ("Fired", "Resolved"):
        raise EventError(f"{w}monitorCondition must be Fired or Resolved", f"{w}monitorCondition", "send Fired")
    targets = ess.get("alertTargetIDs")
    targets = [] if targets is None else targets
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise EventError(f"{w}alertTargetIDs must be a list of strings", f"{w}alertTargetIDs", "send resource ids")
    fired = _time(ess.get("firedDateTime"), f"{w}firedDateTime", required=False)
    custom = data.get("customProperties")
    custom = {} if custom is None else custom
    if not isinstance(custom, dict):
        raise EventError("data.customProperties must be an object", "data.customProperties", "send an object")

    model: str | None = None
    if isinstance(custom.get(MODEL_TAG), str):
        model = _model(custom[MODEL_TAG], known, f"data.customProperties.{MODEL_TAG}")
    for target in targets:
        parts = target.split("/")
        lowered = [p.lower() for p in parts]
        if model is None and "onlineendpoints" in lowered:
            endpoint = parts[lowered.index("onlineendpoints") + 1] if lowered[-1] != "onlineendpoints" else ""
            model = known.endpoint_model(endpoint) or _prefixed_model(endpoint, known)
    model = model or _prefixed_model(rule, known)
    if model is None:
        raise UnknownModelError(
            f"alert {rule[:64]!r} names no known model",
            f"data.customProperties.{MODEL_TAG}",
            f"target the model's online endpoint, name the rule <model>-…, or set custom property {MODEL_TAG}",
        )

    metric: dict[str, Any] = {}
    context = data.get("alertContext")
    if isinstance(context, dict):
        cond = context.get("condition")
        all_of = cond.get("allOf") if isinstance(cond, dict) else None
        if isinstance(all_of, list) and all_of and isinstance(all_of[0], dict):
            metric = all_of[0]
    metric_name = metric.get("metricName") if isinstance(metric.get("metricName"), str) else None
    operator = metric.get("operator") if isinstance(metric.get("operator"), str) else None
    alert = AlertEssentials(
        alert_id=alert_id,
        rule=rule,
        severity=severity,
        signal_type=_str(ess, "signalType", w),
        condition=condition,
        fired_at=fired,
        target_ids=tuple(targets),
        description=_opt_str(ess, "description", w) or "",
        metric_name=metric_name,
        metric_value=_opt_number(metric, "metricValue"),
        threshold=_opt_number(metric, "threshold"),
        operator=operator,
    )
    what = f" ({metric_name} {operator} {alert.threshold}: {alert.metric_value})" if metric_name else ""
    return Trigger(
        kind="monitor_alert",
        model=model,
        reason=f"Azure Monitor alert {rule} {condition.lower()}{what}",
        event_id=alert_id,
        event_type=COMMON_ALERT_SCHEMA,
        actionable=condition == "Fired",
        source=targets[0] if targets else "",
        subject=rule,
        occurred_at=fired,
        alert=alert,
    )


_MANUAL_FIELDS = frozenset({"model", "reason", "requested_by", "request_id"})


def _manual(raw: dict[str, Any], known: KnownModels, request_id: str | None, extra: Collection[str]) -> Trigger:
    raw = {name: value for name, value in raw.items() if value is not None}  # a null is a field left out
    fields = _MANUAL_FIELDS | set(extra)
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise EventError(
            f"unknown field {unknown[0][:64]!r}", unknown[0][:64], f"a retrain request has {sorted(fields)}"
        )
    model = _model(_str(raw, "model"), known, "model")
    reason = bounded_text(_opt_str(raw, "reason"), "reason", MAX_TEXT_CHARS) or "manual request"
    requested_by = bounded_text(_opt_str(raw, "requested_by"), "requested_by", MAX_NAME_CHARS) or "api"
    event_id = (
        bounded_text(_opt_str(raw, "request_id"), "request_id", MAX_NAME_CHARS)
        or bounded_text(request_id, "Idempotency-Key", MAX_NAME_CHARS)
        or str(uuid.uuid4())
    )
    return Trigger(
        kind="manual",
        model=model,
        reason=reason,
        event_id=event_id,
        event_type="Perennial.ManualRequest",
        occurred_at=datetime.now(UTC),
        details={"requested_by": requested_by},
    )


def parse_http(
    body: Any,
    known: KnownModels | Collection[str],
    request_id: str | None = None,
    extra_fields: Collection[str] = (),
) -> Trigger:
    """An HTTP body → Trigger: an Azure Monitor common-schema alert or a manual retrain request.

    ``request_id`` (e.g. an ``Idempotency-Key`` header) makes a retried request the same run.
    ``extra_fields``: more fields a retrain request may carry, which the caller reads itself (the API's
    ``blobs``); an unknown field's error lists them too. Raises only :class:`EventError`.
    """
    models = KnownModels.of(known)
    try:
        raw = (
            _load_json(bytes(body) if isinstance(body, bytearray) else body)
            if isinstance(body, str | bytes | bytearray)
            else body
        )
        raw = _obj(raw, "body")
        if raw.get("schemaId") == COMMON_ALERT_SCHEMA:
            _unicode_only(raw, "")
            return _monitor_alert(raw, models)
        if "schemaId" in raw:
            raise EventError(
                f"schemaId {str(raw['schemaId'])[:64]!r} is not supported",
                "schemaId",
                f"enable the common alert schema ({COMMON_ALERT_SCHEMA}) on the action group",
            )
        return _manual(raw, models, request_id, extra_fields)
    except EventError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as exc:
        raise EventError(f"the request is malformed ({type(exc).__name__})", "body", "send a JSON object") from None


# --------------------------------------------------------------------------- what an alert does

#: Trigger kinds that start a retrain. Run-status and model events, and Perennial's own outbound events that
#: come back through the topic subscription, are recorded only.
RETRAIN_KINDS = frozenset({"retrain_requested", "drift_alert", "monitor_alert"})
#: Trigger kinds a monitor raises by itself: it keeps firing while its condition holds (a daily drift monitor
#: whose baseline is not the new champion's data, a log alert with a new alertId each evaluation), so these wait
#: for the model's runs as the schedule does. ``retrain_requested`` (the schedule, which has already waited, or a
#: person) and a person's ``manual`` request do not.
MONITOR_KINDS = frozenset({"drift_alert", "monitor_alert"})

AlertAction = Literal["retrain", "recorded", "suppressed"]


@dataclass(frozen=True)
class AlertDecision:
    """What an inbound alert does: start (or resend) its run, be recorded only, or be suppressed; why, and (when
    suppressed) what to do instead."""

    action: AlertAction
    reason: str
    hint: str = ""


def decide_alert(
    trigger: Trigger, run_id: str, runs: Sequence[Run], now: datetime, cooldown: timedelta
) -> AlertDecision:
    """Whether ``trigger`` starts the run ``run_id``, given the model's recent ``runs`` (newest first).

    A monitor's alert (:data:`MONITOR_KINDS`) follows the schedule's rule (:func:`shared.live.blocking_run`): while
    a run is pending or running, or within ``cooldown`` (the spec's ``triggers.cooldown_hours``) of the newest
    creation of a run that says something of the model (:func:`shared.registry.holds_back_alerts`), it is
    suppressed with the reason, not queued. A redelivered alert whose run exists already goes on as before
    (its work is sent again). Everything else is as :data:`RETRAIN_KINDS` and ``trigger.actionable`` say.
    """
    if trigger.kind not in RETRAIN_KINDS or not trigger.actionable:
        return AlertDecision("recorded", trigger.reason)
    if trigger.kind in MONITOR_KINDS and not any(run.run_id == run_id for run in runs):
        from shared.live import blocking_run  # heavy (numpy, pyarrow, scipy): only when needed
        from shared.registry import holds_back_alerts

        blocked = blocking_run([run for run in runs if holds_back_alerts(run)], now, cooldown)
        if blocked is not None:
            return AlertDecision(
                "suppressed",
                blocked,
                f"to retrain anyway, POST /api/models/{trigger.model}/retrain; a monitor that keeps firing after a "
                "retrain needs its baseline moved to the new champion's data",
            )
    return AlertDecision("retrain", trigger.reason)


def queued_alert_blocked(
    runs: Sequence[Run], queued: Collection[str], now: datetime, cooldown: timedelta
) -> str | None:
    """Why a monitor's alert accepted earlier should not start its run now that its turn has come, or None.

    :func:`decide_alert` judges an alert when it arrives; two alerts arriving together both pass it, and the
    second waits in the queue behind the first one's run. When the coordinator reaches it, the rule is applied
    again against the runs that ran since (``runs``: the model's, newest first), leaving out the requests of this
    claim (``queued``) and other requests that never ran.
    """
    from shared.live import blocking_run  # heavy (numpy, pyarrow, scipy): only when needed
    from shared.registry import holds_back_alerts

    ran = [run for run in runs if run.run_id not in queued and run.status != "pending" and holds_back_alerts(run)]
    blocked = blocking_run(ran, now, cooldown)
    return None if blocked is None else f"suppressed when its turn came: {blocked}"
