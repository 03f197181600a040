"""Engine details the pattern tests do not reach: events dropped at continue_as_new (as in Azure), status flags."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.clock import VirtualClock
from tests.devhost.conftest import Harness, event_types, start_harness

EXECUTION_STARTED = 0


@pytest.fixture(scope="module")
def carry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = start_harness(Path(__file__).with_name("carry_app.py"), tmp_path_factory.mktemp("carry"), VirtualClock())
    try:
        yield harness
    finally:
        harness.close()


def test_continue_as_new_drops_events_that_were_not_consumed_as_azure_does(carry: Harness) -> None:
    instance = carry.start("collector", {"seen": [], "want": 2, "generation": 0})
    carry.idle()
    sdk = carry.sdk()
    # Suspended, the instance queues the events; on resume all three arrive in ONE episode, which consumes
    # one and continues as new. A Python orchestrator's continue_as_new has no preserveUnprocessedEvents in
    # Azure, so the other two are gone: the next generation waits for a new one.
    carry.call(sdk.suspend(instance, "hold the events"))
    carry.idle()
    for value in ("a", "b", "c"):
        carry.call(sdk.raise_event(instance, "item", value))
    carry.idle()
    assert carry.status(instance).runtime_status.value == "Suspended"
    carry.call(sdk.resume(instance, "deliver"))
    carry.idle()
    assert carry.status(instance).runtime_status.value == "Running", "b and c were not carried over"
    carry.call(sdk.raise_event(instance, "item", "d"))  # an event raised after continue_as_new does arrive
    status = carry.wait(instance, timeout=20)
    assert status.runtime_status.value == "Completed", status.to_json()
    assert status.output == {"seen": ["a", "d"], "generation": 1}
    history = carry.history(instance)
    assert event_types(history).count(EXECUTION_STARTED) == 1, "each generation starts a fresh history"


def test_status_input_and_history_flags_match_the_host(carry: Harness) -> None:
    instance = carry.start("collector", {"seen": [], "want": 1, "generation": 0})
    carry.idle()
    carry.call(carry.sdk().raise_event(instance, "item", "x"))
    carry.wait(instance)
    url = f"/runtime/webhooks/durabletask/instances/{instance}"
    # As the host: input is shown unless showInput=false; history only with showHistory=true.
    default = carry.http.get(url, params={"code": carry.key}).json()
    assert default["input"] == {"seen": [], "want": 1, "generation": 0}
    assert "historyEvents" not in default or default["historyEvents"] is None
    hidden = carry.http.get(url, params={"code": carry.key, "showInput": "false"}).json()
    assert hidden["input"] is None
    # Through the SDK's own client: show_history / show_history_output.
    full = carry.call(carry.sdk().get_status(instance, show_history=True, show_history_output=True, show_input=True))
    assert full.input_ == {"seen": [], "want": 1, "generation": 0}
    kinds = [e["EventType"] for e in full.historyEvents]
    assert "EventRaised" in kinds
    assert kinds[-1] == "ExecutionCompleted"
    assert "seen" in str(full.historyEvents[-1]["Result"])  # show_history_output includes the result
