"""Two requests with the same ``Idempotency-Key`` racing each other: the registry's create decides.

Over HTTP the race cannot be forced, so the request that loses it is replayed here: the other one's run is
already stored when ``functions.api._queue_run`` creates its own (the same run id, derived from the key).
- the same request (a client's retry) gets that run and sends its work item again (the coordinator takes a
  run id once), not a 409 naming its own run;
- another request under the same key gets a 422 naming the run, and sends nothing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import azure.functions as func

from functions.api import _queue_run
from shared.registry import Registry, Run
from shared.workflow import TriggerInfo


class RecordingClient:
    """The durable client calls send_work makes: no coordinator yet, so it starts one."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    async def get_status(self, instance: str) -> None:
        return None

    async def start_new(self, name: str, instance: str, given: dict[str, Any]) -> str:
        self.started.append(given["first_work"])
        return instance


def _queue(registry: Registry, model: str, reason: str, fingerprint: str) -> tuple[func.HttpResponse, RecordingClient]:
    run_id = f"{model}-00000000000000a1"  # what the key maps to, for both requests
    trigger = TriggerInfo(kind="manual", reason=reason, source_event_id=run_id)
    run = Run(model, run_id, "manual", reason, run_id, status="pending", stage="queued")
    request = func.HttpRequest(method="POST", url=f"http://127.0.0.1/api/models/{model}/retrain", body=b"{}")
    client = RecordingClient()
    answer = asyncio.run(_queue_run(request, client, registry, "retrain", run, trigger, {}, fingerprint))  # type: ignore[arg-type]
    return answer, client


def test_the_retry_that_lost_the_race_gets_the_run_and_resends_its_work(registry: Registry, model: str) -> None:
    first, first_client = _queue(registry, model, "weekly refresh", "fingerprint-a")
    retry, retry_client = _queue(registry, model, "weekly refresh", "fingerprint-a")
    assert (first.status_code, retry.status_code) == (202, 202)
    assert json.loads(retry.get_body())["run_id"] == json.loads(first.get_body())["run_id"]
    assert retry_client.started == first_client.started, "the stored run's own work item, sent again"


def test_another_request_under_the_same_key_gets_a_422_and_sends_nothing(registry: Registry, model: str) -> None:
    first, _ = _queue(registry, model, "weekly refresh", "fingerprint-a")
    other, other_client = _queue(registry, model, "drift alert", "fingerprint-b")
    assert first.status_code == 202
    assert other.status_code == 422
    problem = json.loads(other.get_body())
    assert problem["field"] == "Idempotency-Key"
    assert problem["run_id"] == f"{model}-00000000000000a1"
    assert other_client.started == []
    stored = registry.require_run(model, f"{model}-00000000000000a1")
    assert stored.trigger_reason == "weekly refresh", "the first request's run is untouched"
