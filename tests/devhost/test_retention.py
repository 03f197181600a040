"""The housekeeping timer purges orchestrations that ended a retention period ago, through the SDK's client against
devhost's Durable HTTP API (what the host's own client calls): ended ones go, running ones stay whatever their age."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from devhost.clock import VirtualClock
from functions.retention import purge_ended_orchestrations
from shared.housekeeping import HISTORY_RETENTION

from .conftest import FIXTURES, Harness, start_harness


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    clock = VirtualClock()
    harness = start_harness(FIXTURES / "patterns_app.py", tmp_path_factory.mktemp("retention"), clock)
    harness.clock = clock  # type: ignore[attr-defined]
    try:
        yield harness
    finally:
        harness.close()


def test_ended_orchestrations_go_after_the_retention_period_and_running_ones_stay(host: Harness) -> None:
    ended = host.start("chaining")
    assert host.wait(ended).runtime_status.value == "Completed"
    waiting = host.start("approval")  # waits for a person: Running, however old
    host.idle()
    now = host.clock.now()  # type: ignore[attr-defined]

    assert host.call(purge_ended_orchestrations(host.sdk(), now + HISTORY_RETENTION - timedelta(days=1))) == 0
    assert host.status(ended).runtime_status.value == "Completed"

    assert host.call(purge_ended_orchestrations(host.sdk(), now + HISTORY_RETENTION + timedelta(days=1))) == 1
    assert host.status(ended).runtime_status is None  # gone (the SDK's answer to a 404)
    assert host.status(waiting).runtime_status.value == "Running"
