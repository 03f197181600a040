"""Runs whose record says running but that nothing runs any more: the housekeeping timer closes them (real
registry on Azurite; the Durable client answers as the host does for each instance's state)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus as State

from functions.stranded import close_stranded_runs
from shared.publish import OutboundEvent
from shared.registry import Registry, Run

pytestmark = pytest.mark.azurite
NOW = datetime.now(UTC)


@dataclass
class Status:
    runtime_status: State | None
    last_updated_time: datetime | None = None


class Client:
    """What ``get_status`` answers for each instance (None: not found, as the SDK reports a 404)."""

    def __init__(self, states: dict[str, State], changed_at: dict[str, datetime] | None = None) -> None:
        self.states = states
        self.changed_at = changed_at or {}  # when each instance last changed (its failure, for a Failed one)

    async def get_status(self, instance: str) -> Status:
        return Status(self.states.get(instance), self.changed_at.get(instance))


class Publisher:
    def __init__(self) -> None:
        self.events: list[OutboundEvent] = []

    def publish(self, events: list[OutboundEvent]) -> None:
        self.events += events


def _running(registry: Registry, model: str, run_id: str, idle: timedelta) -> Run:
    return registry.create_run(
        Run(model, run_id, "manual", "t", run_id, status="running", stage="training", updated_at=NOW - idle)
    )


def _close(registry: Registry, model: str, states: dict[str, State]) -> tuple[list[Run], Publisher]:
    publisher = Publisher()
    closed = asyncio.run(close_stranded_runs(Client(states), registry, publisher, model, NOW))  # type: ignore[arg-type]
    return closed, publisher


def test_a_terminated_run_is_closed_as_failed_with_why_and_announced(registry: Registry) -> None:
    _running(registry, "stranded-1", "stranded-1-000000001", timedelta(minutes=1))
    closed, publisher = _close(registry, "stranded-1", {"stranded-1-000000001": State.Terminated})
    assert [r.run_id for r in closed] == ["stranded-1-000000001"]
    run = registry.require_run("stranded-1", "stranded-1-000000001")
    assert (run.status, run.stage) == ("failed", "done")
    assert run.decision_reasons == [
        "closed by housekeeping: its orchestration stranded-1-000000001 is Terminated without an outcome recorded; "
        "its jobs and traffic are tidied like any ended run's"
    ]
    assert [e.event_type for e in publisher.events] == ["Perennial.RunCompleted"]
    assert not registry.active_runs("stranded-1"), "the model can train again"


@pytest.mark.parametrize(
    ("states", "idle"),
    [
        ({"stranded-2-000000002": State.Running}, timedelta(hours=5)),  # a long stage: alive
        ({}, timedelta(minutes=2)),  # its instance is about to be created by the coordinator
        ({"stranded-2-000000002": State.Failed}, timedelta(minutes=2)),  # the coordinator records the failure
        ({"stranded-2-000000002": State.Terminated, "stranded-2-000000002-rollout": State.Running}, timedelta(0)),
    ],
    ids=["running", "not-yet-created", "failed-recently", "rollout-still-running"],
)
def test_a_run_that_may_still_be_running_is_left_alone(
    registry: Registry, states: dict[str, State], idle: timedelta
) -> None:
    model = (
        f"stranded-2-{len(states)}-{int(idle.total_seconds())}"  # one model per case: they share the module's Azurite
    )
    run_id = "stranded-2-000000002"
    _running(registry, model, run_id, idle)
    closed, publisher = _close(registry, model, states)
    assert closed == []
    assert publisher.events == []
    assert registry.require_run(model, run_id).status == "running"


def test_an_instance_gone_for_longer_than_the_grace_is_closed(registry: Registry) -> None:
    _running(registry, "stranded-3", "stranded-3-000000003", timedelta(minutes=30))
    closed, _ = _close(registry, "stranded-3", {})
    assert (
        closed[0]
        .decision_reasons[0]
        .startswith("closed by housekeeping: its orchestration stranded-3-000000003 does not exist")
    )


def test_a_status_that_cannot_be_read_closes_nothing(registry: Registry) -> None:
    class Broken(Client):
        async def get_status(self, instance: str) -> Any:
            raise Exception("The operation failed with an unexpected status code 503")

    _running(registry, "stranded-4", "stranded-4-000000004", timedelta(hours=1))
    closed = asyncio.run(close_stranded_runs(Broken({}), registry, Publisher(), "stranded-4", NOW))  # type: ignore[arg-type]
    assert closed == []


def test_a_run_that_failed_after_a_long_stage_waits_for_the_coordinator_to_record_it(registry: Registry) -> None:
    """Its record last changed hours ago (a long training stage), but the orchestration failed a minute ago: the
    coordinator's finish_run (retried for minutes) records the failure, not housekeeping."""
    run_id = "stranded-5-000000005"
    _running(registry, "stranded-5", run_id, timedelta(hours=3))
    client = Client({run_id: State.Failed}, {run_id: NOW - timedelta(minutes=1)})
    publisher = Publisher()
    assert asyncio.run(close_stranded_runs(client, registry, publisher, "stranded-5", NOW)) == []  # type: ignore[arg-type]
    client.changed_at = {run_id: NOW - timedelta(minutes=11)}
    [closed] = asyncio.run(close_stranded_runs(client, registry, publisher, "stranded-5", NOW))  # type: ignore[arg-type]
    assert "is Failed without an outcome recorded" in closed.decision_reasons[0]
