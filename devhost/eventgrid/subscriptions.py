"""The subscriptions file: topics, and which events of which topic go to which function.

It mirrors ``infra/wiring.bicep`` with the same property names as Azure's event
subscription resource (``filter.includedEventTypes``, ``subjectBeginsWith``,
``advancedFilters``, ``retryPolicy.maxDeliveryAttempts``), so a filter behaves the same
locally and in Azure. Topic kinds: ``storage`` (fed by the landing-container watcher) and
``custom`` (fed by posts to ``/eventgrid/topics/<name>/api/events``, as from
``EventGridPublisherClient``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_FILE = Path(__file__).with_name("subscriptions.json")


class SubscriptionsError(ValueError):
    """The subscriptions file is missing or invalid; the message names the field and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Topic(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9-]{1,50}$")
    kind: Literal["storage", "custom"]
    container: str = "landing"  # storage topics: the container the watcher polls


AdvancedOperator = Literal[
    "StringIn",
    "StringNotIn",
    "StringBeginsWith",
    "StringEndsWith",
    "StringContains",
    "NumberIn",
    "NumberNotIn",
    "NumberGreaterThan",
    "NumberGreaterThanOrEquals",
    "NumberLessThan",
    "NumberLessThanOrEquals",
    "BoolEquals",
    "IsNotNull",
    "IsNullOrUndefined",
]


class AdvancedFilter(_Model):
    operator_type: AdvancedOperator = Field(alias="operatorType")
    key: str
    values: list[Any] = Field(default_factory=list)
    value: Any = None

    def matches(self, event: dict[str, Any]) -> bool:
        found, actual = _lookup(event, self.key)
        op = self.operator_type
        if op == "IsNullOrUndefined":
            return not found or actual is None
        if op == "IsNotNull":
            return found and actual is not None
        if not found or actual is None:
            return op in ("StringNotIn", "NumberNotIn")
        if op.startswith("String"):
            text = str(actual).lower()
            wanted = [str(v).lower() for v in self.values]
            return {
                "StringIn": lambda: text in wanted,
                "StringNotIn": lambda: text not in wanted,
                "StringBeginsWith": lambda: any(text.startswith(v) for v in wanted),
                "StringEndsWith": lambda: any(text.endswith(v) for v in wanted),
                "StringContains": lambda: any(v in text for v in wanted),
            }[op]()
        if op == "BoolEquals":
            return isinstance(actual, bool) and actual == self.value
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return False
        if op == "NumberIn":
            return actual in self.values
        if op == "NumberNotIn":
            return actual not in self.values
        bound = float(self.value)
        return {
            "NumberGreaterThan": actual > bound,
            "NumberGreaterThanOrEquals": actual >= bound,
            "NumberLessThan": actual < bound,
            "NumberLessThanOrEquals": actual <= bound,
        }[op]


def _lookup(event: dict[str, Any], key: str) -> tuple[bool, Any]:
    """Event Grid keys are dotted paths (``data.api``); envelope keys match both schemas."""
    aliases = {"eventtype": ("eventType", "type"), "subject": ("subject",), "id": ("id",)}
    parts = key.split(".")
    names = aliases.get(parts[0].lower(), (parts[0],))
    value: Any = None
    for name in names:
        if name in event:
            value = event[name]
            break
    else:
        return False, None
    for part in parts[1:]:
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


class Filter(_Model):
    included_event_types: list[str] | None = Field(default=None, alias="includedEventTypes")
    subject_begins_with: str = Field(default="", alias="subjectBeginsWith")
    subject_ends_with: str = Field(default="", alias="subjectEndsWith")
    is_subject_case_sensitive: bool = Field(default=False, alias="isSubjectCaseSensitive")
    advanced_filters: list[AdvancedFilter] = Field(default_factory=list, alias="advancedFilters")

    def matches(self, event: dict[str, Any]) -> bool:
        event_type = str(event.get("eventType", event.get("type", "")))
        if self.included_event_types is not None and event_type.lower() not in {
            t.lower() for t in self.included_event_types
        }:
            return False
        subject = str(event.get("subject") or "")
        begins, ends = self.subject_begins_with, self.subject_ends_with
        if not self.is_subject_case_sensitive:
            subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
        if not (subject.startswith(begins) and subject.endswith(ends)):
            return False
        return all(f.matches(event) for f in self.advanced_filters)


class RetryPolicy(_Model):
    max_delivery_attempts: int = Field(default=30, ge=1, le=30, alias="maxDeliveryAttempts")
    event_time_to_live_minutes: int = Field(default=1440, ge=1, le=1440, alias="eventTimeToLiveInMinutes")


class Subscription(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9-]{3,64}$")
    topic: str
    function: str
    filter: Filter = Field(default_factory=Filter)
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy, alias="retryPolicy")


class SubscriptionsFile(_Model):
    comment: str = Field(default="", alias="$comment")
    topics: list[Topic]
    subscriptions: list[Subscription]

    @model_validator(mode="after")
    def _topics_exist(self) -> SubscriptionsFile:
        names = [t.name for t in self.topics]
        if len(set(names)) != len(names):
            raise ValueError(f"topic names must be unique, got {names}")
        for sub in self.subscriptions:
            if sub.topic not in names:
                raise ValueError(f"subscription {sub.name!r} names unknown topic {sub.topic!r} (topics: {names})")
        return self

    def topic(self, name: str) -> Topic | None:
        return next((t for t in self.topics if t.name == name), None)

    def matching(self, topic: str, event: dict[str, Any]) -> list[Subscription]:
        return [s for s in self.subscriptions if s.topic == topic and s.filter.matches(event)]


def load_subscriptions(path: str | Path = DEFAULT_FILE) -> SubscriptionsFile:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubscriptionsError(f"{path}: no such file (see devhost/eventgrid/subscriptions.json)") from None
    except (OSError, ValueError) as exc:
        raise SubscriptionsError(f"{path}: not readable JSON ({exc})") from None
    try:
        return SubscriptionsFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise SubscriptionsError(
            f"{path}: {where}: {first['msg']} (compare with devhost/eventgrid/subscriptions.json)"
        ) from None
