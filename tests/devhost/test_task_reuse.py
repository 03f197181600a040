"""task_any / task_all over a task an earlier yield scheduled: refused, as Azure's host may never complete it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.clock import VirtualClock
from tests.devhost.conftest import Harness, start_harness


@pytest.fixture(scope="module")
def reuse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = start_harness(Path(__file__).with_name("reuse_app.py"), tmp_path_factory.mktemp("reuse"), VirtualClock())
    try:
        yield harness
    finally:
        harness.close()


@pytest.mark.parametrize(
    ("orchestrator", "composite", "reused"),
    [
        ("reuses_yielded_activity", "task_any", "task 0 ('activity say')"),
        ("reuses_pending_loser", "task_any", "'event go'"),
        ("reuses_in_task_all", "task_all", "'event go'"),
    ],
)
def test_composite_that_reuses_a_scheduled_task_fails_the_instance(
    reuse: Harness, orchestrator: str, composite: str, reused: str
) -> None:
    instance = reuse.start(orchestrator)
    status = reuse.wait(instance)
    assert status.runtime_status.value == "Failed", status.to_json()
    message = status.output
    assert message.startswith(f"Orchestrator function '{orchestrator}' failed: ")
    assert f"{composite} re-uses {reused}, which an earlier yield already scheduled" in message
    assert "azure-functions-durable-python#446" in message
    assert "create a fresh task" in message  # the fix
    # Nothing the unsafe composite asked for was scheduled (no timer, no second activity).
    kinds = [e["EventType"] for e in reuse.history(instance)]
    assert 10 not in kinds  # TimerCreated
    assert kinds.count(4) == 1  # TaskScheduled: only the first activity


def test_fresh_composites_pending_losers_and_cancelled_timers_still_work(reuse: Harness) -> None:
    instance = reuse.start("legal")
    status = reuse.wait(instance)
    assert status.runtime_status.value == "Completed", status.output
    assert status.output == {
        "fresh": "Hello fresh",
        "pair": ["Hello left", "Hello right"],
        "both": ["Hello x", "Hello y"],
        "again": ["Hello done", "Hello z"],
    }
    history = reuse.history(instance)
    timers = [e for e in history if e["EventType"] == 10]
    assert len(timers) == 1  # created, then cancelled: it never fires
    assert not [e for e in history if e["EventType"] == 11]
