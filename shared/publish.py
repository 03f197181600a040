"""Perennial's own events (versioned types and data) and the port that publishes them.

Events go to our Event Grid custom topic, where infra/ subscribes ``on_alert_event`` (for
``Perennial.RetrainRequested`` and ``Perennial.DriftDetected``) and anyone else may
subscribe (dashboards, approval flows). Each type has a pydantic data model and a
``dataVersion``: a consumer accepts any ``1.x`` (new optional fields are minor versions,
unknown fields are ignored) and refuses another major version with a clear error.

Adapters of :class:`EventPublisher`:

- :class:`EventGridPublisher`: the real ``azure-eventgrid`` client (managed identity in
  Azure, an access key locally against devhost's custom topic)
- :class:`MemoryPublisher`: keeps events in a list (tests, in-process use)
- :class:`OutboxPublisher`: appends JSON lines to a file when no topic is configured

The SDK ignores ``transport=`` for basic topics, so tests drive it over real HTTP
against devhost's local custom topic instead of a fake transport.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.settings import EventGridSettings, Settings

DATA_VERSION = "1.0"


class PerennialEventType(StrEnum):
    RETRAIN_REQUESTED = "Perennial.RetrainRequested"
    DRIFT_DETECTED = "Perennial.DriftDetected"
    VALIDATION_FAILED = "Perennial.ValidationFailed"
    MODEL_REGISTERED = "Perennial.ModelRegistered"
    MODEL_PROMOTED = "Perennial.ModelPromoted"
    ROLLOUT_ROLLED_BACK = "Perennial.RolloutRolledBack"
    RUN_COMPLETED = "Perennial.RunCompleted"


class PublishError(RuntimeError):
    """Publishing failed; ``hint`` says what to check (endpoint, key, role assignment).

    ``permanent``: the topic refused the events themselves (400, 413), so sending them again cannot help;
    otherwise (unreachable, throttled, a credential or role not yet in place) a later try may succeed.
    """

    def __init__(self, message: str, hint: str, *, permanent: bool = False) -> None:
        self.hint = hint
        self.permanent = permanent
        super().__init__(f"{message} ({hint})")


class EventDataError(ValueError):
    """A Perennial event's data does not match its type and version; ``field`` names the culprit."""

    def __init__(self, message: str, field: str, hint: str) -> None:
        self.message = message  # without the hint: a wrapping error adds the hint itself
        self.field = field
        self.hint = hint
        super().__init__(f"{message} ({hint})")


# --------------------------------------------------------------------------- data, one model per type


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float written as a string ("inf", "-inf", "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class EventData(BaseModel):
    """Fields every Perennial event carries. Unknown fields are ignored (newer minor versions add some)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)
    model: str = Field(min_length=1, max_length=64)


class RetrainRequested(EventData):
    reason: str = Field(min_length=1)
    requested_by: str = "schedule"  # schedule | api | policy | person
    details: dict[str, Any] = Field(default_factory=dict)


class DriftDetected(EventData):
    method: str  # psi | ks | wasserstein | jensen_shannon
    score: float
    threshold: float
    columns: list[str] = Field(default_factory=list)


class ValidationFailed(EventData):
    blob_url: str
    blob_etag: str
    report_url: str | None = None
    errors: list[str] = Field(default_factory=list)


class ModelRegistered(EventData):
    version: str
    run_id: str
    metrics: dict[str, float] = Field(default_factory=dict)


class ModelPromoted(EventData):
    version: str
    run_id: str
    previous_version: str | None = None


class RolloutRolledBack(EventData):
    version: str
    run_id: str
    step: str  # the step that failed (smoke, shadow, traffic-10, …), "rollout" when none was recorded
    reasons: list[str] = Field(default_factory=list)
    # The deciding analysis as recorded for the step: verdict, per-metric counts, statistics, p-values.
    evidence: dict[str, Any] = Field(default_factory=dict)

    @field_validator("evidence")
    @classmethod
    def _strict_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        # A ratio against a zero baseline is inf; JSON has no inf, and Event Grid refuses "Infinity".
        cleaned: dict[str, Any] = _finite(value)
        return cleaned


class RunCompleted(EventData):
    run_id: str
    status: str
    decision: str | None = None
    reasons: list[str] = Field(default_factory=list)


EVENT_DATA: dict[PerennialEventType, type[EventData]] = {
    PerennialEventType.RETRAIN_REQUESTED: RetrainRequested,
    PerennialEventType.DRIFT_DETECTED: DriftDetected,
    PerennialEventType.VALIDATION_FAILED: ValidationFailed,
    PerennialEventType.MODEL_REGISTERED: ModelRegistered,
    PerennialEventType.MODEL_PROMOTED: ModelPromoted,
    PerennialEventType.ROLLOUT_ROLLED_BACK: RolloutRolledBack,
    PerennialEventType.RUN_COMPLETED: RunCompleted,
}
_TYPE_OF: dict[type[EventData], PerennialEventType] = {v: k for k, v in EVENT_DATA.items()}


def parse_perennial_data(event_type: str, data_version: str | None, data: Any) -> EventData:
    """Validate the data of a ``Perennial.*`` event; EventDataError names the field and the fix."""
    try:
        kind = PerennialEventType(event_type)
    except ValueError:
        known = ", ".join(t.value for t in PerennialEventType)
        raise EventDataError(
            f"unknown Perennial event type {event_type!r}", "eventType", f"use one of {known}"
        ) from None
    if data_version is not None and not isinstance(data_version, str):
        raise EventDataError(
            f"{event_type} dataVersion {data_version!r} is not a string", "dataVersion", f'send "{DATA_VERSION}"'
        )
    major = (data_version or "").split(".")[0]
    if major != DATA_VERSION.split(".")[0]:
        raise EventDataError(
            f"{event_type} dataVersion {data_version!r} is not supported",
            "dataVersion",
            f"this version of Perennial reads {DATA_VERSION.split('.')[0]}.x",
        )
    if not isinstance(data, dict):
        raise EventDataError(f"{event_type} data must be a JSON object", "data", "send an object with 'model'")
    try:
        return EVENT_DATA[kind].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "data." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "data"
        raise EventDataError(
            f"{event_type} {where}: {first['msg']}", where, f"see shared/publish.py {EVENT_DATA[kind].__name__}"
        ) from None


# --------------------------------------------------------------------------- outbound events


@dataclass(frozen=True)
class OutboundEvent:
    """One event in Event Grid schema, ready to publish."""

    event_type: str
    subject: str
    data: dict[str, Any]
    data_version: str = DATA_VERSION
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    event_time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        """The Event Grid schema JSON (what the service delivers to subscribers)."""
        return {
            "id": self.id,
            "eventType": self.event_type,
            "subject": self.subject,
            "eventTime": self.event_time.isoformat().replace("+00:00", "Z"),
            "data": self.data,
            "dataVersion": self.data_version,
            "metadataVersion": "1",
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> OutboundEvent:
        """The event :meth:`to_dict` wrote (same id and time: a subscriber can drop a second delivery)."""
        return cls(
            event_type=str(document["eventType"]),
            subject=str(document["subject"]),
            data=dict(document["data"]),
            data_version=str(document["dataVersion"]),
            id=str(document["id"]),
            event_time=_utc(datetime.fromisoformat(str(document["eventTime"]))),
        )


def _utc(moment: datetime) -> datetime:
    """A time without a zone is UTC (Event Grid's times are), so that events' times always compare."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def make_event(data: EventData, subject: str | None = None, event_id: str | None = None) -> OutboundEvent:
    """Wrap typed data as an event. Pass a deterministic ``event_id`` (e.g. ``f"{run_id}:promoted"``) so that
    a retried activity publishes the same id and subscribers can drop the duplicate."""
    return OutboundEvent(
        event_type=_TYPE_OF[type(data)].value,
        subject=subject or f"models/{data.model}",
        data=data.model_dump(mode="json"),
        id=event_id or str(uuid.uuid4()),
    )


def run_completed_event(
    model: str, run_id: str, status: str, decision: str | None, reasons: Sequence[str]
) -> OutboundEvent:
    """``RunCompleted`` for a run that has ended, with the id every publisher of it uses (``<run_id>:completed``),
    so the orchestrator's finish and the API closing a run that never ran cannot announce it twice."""
    data = RunCompleted(model=model, run_id=run_id, status=status, decision=decision, reasons=list(reasons))
    return make_event(data, event_id=f"{run_id}:completed")


class EventPublisher(Protocol):
    def publish(self, events: Sequence[OutboundEvent]) -> None:
        """Publish every event or raise PublishError; events may be delivered more than once."""
        ...


class MemoryPublisher:
    """Keeps what was published (tests; in-process wiring)."""

    def __init__(self) -> None:
        self.events: list[OutboundEvent] = []
        self._lock = threading.Lock()

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        with self._lock:
            self.events.extend(events)


class OutboxPublisher:
    """Appends events as JSON lines to a file: the local fallback when no topic is configured."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(e.to_dict()) + "\n" for e in events)
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(lines)


#: How long a publish may wait to connect, and then for the topic's answer.
PUBLISH_CONNECT_SECONDS = 10
PUBLISH_READ_SECONDS = 30
#: Event Grid's answers that refuse the events themselves (malformed, or over the 1 MB batch limit).
REFUSED_EVENTS = frozenset({400, 413})


class EventGridPublisher:
    """The azure-eventgrid adapter: EventGridPublisherClient with an access key or a managed identity."""

    def __init__(self, settings: EventGridSettings, client_id: str | None = None) -> None:
        from azure.eventgrid import EventGridPublisherClient

        self.endpoint = settings.endpoint
        if settings.key:
            from azure.core.credentials import AzureKeyCredential

            credential: Any = AzureKeyCredential(settings.key)
        else:
            from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

            credential = ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
        self._client = EventGridPublisherClient(settings.endpoint, credential)

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
        from azure.eventgrid import EventGridEvent

        if not events:
            return
        batch = [
            EventGridEvent(
                subject=e.subject,
                event_type=e.event_type,
                data=e.data,
                data_version=e.data_version,
                id=e.id,
                event_time=e.event_time,
            )
            for e in events
        ]
        try:
            # Per call: the client ignores these at construction, and the transport's defaults (300 s to
            # connect, no read limit) would let a black-holed topic hold an activity or a timer tick.
            self._client.send(batch, connection_timeout=PUBLISH_CONNECT_SECONDS, read_timeout=PUBLISH_READ_SECONDS)
        except ClientAuthenticationError as exc:
            raise PublishError(
                f"Event Grid refused our credentials at {self.endpoint}: {exc.message}",
                "check PERENNIAL_EVENTGRID_KEY locally, or the 'EventGrid Data Sender' role of the app's identity",
            ) from None
        except HttpResponseError as exc:
            raise PublishError(
                f"Event Grid answered {exc.status_code} at {self.endpoint}: {exc.message}",
                "check PERENNIAL_EVENTGRID_ENDPOINT (…/api/events) and the event data",
                permanent=exc.status_code in REFUSED_EVENTS,
            ) from None
        except AzureError as exc:
            raise PublishError(
                f"cannot reach Event Grid at {self.endpoint}: {exc}", "check the endpoint and network access"
            ) from None

    def close(self) -> None:
        self._client.close()


def publisher_from_settings(settings: Settings) -> EventPublisher:
    """The topic when one is configured (Azure, or devhost's local topic); else the local outbox file."""
    if settings.eventgrid is not None:
        client_id = settings.azureml.client_id if settings.azureml else settings.storage.client_id
        return EventGridPublisher(settings.eventgrid, client_id=client_id)
    return OutboxPublisher(settings.state_dir / "events" / "outbox.jsonl")
