"""History events in the JSON shape the Functions host sends to the Python Durable SDK.

Every event has ``EventType``, ``EventId``, ``IsPlayed`` and ``Timestamp``; the other fields
follow DurableTask.Core's names (``Name``, ``Input``, ``Result``, ``TaskScheduledId``,
``TimerId``, ``FireAt``, ``Reason``, ``Details``, ``InstanceId``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

Event = dict[str, Any]


class EventType(IntEnum):
    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_CREATED = 7
    SUB_ORCHESTRATION_COMPLETED = 8
    SUB_ORCHESTRATION_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20


def format_time(when: datetime) -> str:
    """ISO 8601 UTC with a ``Z``, as the host writes timestamps."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def event(kind: EventType, when: datetime, event_id: int = -1, **fields: Any) -> Event:
    return {"EventType": int(kind), "EventId": event_id, "IsPlayed": False, "Timestamp": format_time(when), **fields}


def execution_started(when: datetime, name: str, input_json: str | None, parent: dict[str, Any] | None) -> Event:
    # `Version` must be present (the SDK reads it), even when null.
    return event(
        EventType.EXECUTION_STARTED,
        when,
        Name=name,
        Input=input_json,
        Version=None,
        ParentInstance=parent,
    )


def orchestrator_started(when: datetime) -> Event:
    return event(EventType.ORCHESTRATOR_STARTED, when)


def orchestrator_completed(when: datetime) -> Event:
    return event(EventType.ORCHESTRATOR_COMPLETED, when)


def task_scheduled(when: datetime, task_id: int, name: str, input_json: str | None) -> Event:
    return event(EventType.TASK_SCHEDULED, when, task_id, Name=name, Input=input_json)


def task_completed(when: datetime, task_id: int, result_json: str | None) -> Event:
    return event(EventType.TASK_COMPLETED, when, TaskScheduledId=task_id, Result=result_json)


def task_failed(when: datetime, task_id: int, reason: str, details: str) -> Event:
    return event(EventType.TASK_FAILED, when, TaskScheduledId=task_id, Reason=reason, Details=details)


def timer_created(when: datetime, task_id: int, fire_at: datetime) -> Event:
    return event(EventType.TIMER_CREATED, when, task_id, FireAt=format_time(fire_at))


def timer_fired(when: datetime, task_id: int, fire_at: datetime) -> Event:
    return event(EventType.TIMER_FIRED, when, TimerId=task_id, FireAt=format_time(fire_at))


def sub_created(when: datetime, task_id: int, name: str, instance_id: str, input_json: str | None) -> Event:
    return event(
        EventType.SUB_ORCHESTRATION_CREATED, when, task_id, Name=name, InstanceId=instance_id, Input=input_json
    )


def sub_completed(when: datetime, task_id: int, result_json: str | None) -> Event:
    return event(EventType.SUB_ORCHESTRATION_COMPLETED, when, TaskScheduledId=task_id, Result=result_json)


def sub_failed(when: datetime, task_id: int, reason: str, details: str) -> Event:
    return event(EventType.SUB_ORCHESTRATION_FAILED, when, TaskScheduledId=task_id, Reason=reason, Details=details)


def event_raised(when: datetime, name: str, input_json: str | None) -> Event:
    return event(EventType.EVENT_RAISED, when, Name=name, Input=input_json)


def execution_completed(when: datetime, status: str, result_json: str | None) -> Event:
    return event(EventType.EXECUTION_COMPLETED, when, OrchestrationStatus=status, Result=result_json)


def execution_terminated(when: datetime, reason: str | None) -> Event:
    return event(EventType.EXECUTION_TERMINATED, when, Input=reason)


def continue_as_new(when: datetime, input_json: str | None) -> Event:
    return event(EventType.CONTINUE_AS_NEW, when, Result=input_json)
