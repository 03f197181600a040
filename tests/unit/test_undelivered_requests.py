"""Requests recorded as pending that nothing will pick up: their work is sent again, and the API's answer when the
coordinator cannot be reached is a 503 that names the recorded run (real registry on Azurite; the Durable client
answers as the host does)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus as State

from functions.api import _earlier_answer, _queue_run
from functions.coordination import CoordinatorUnreachable, send_work
from functions.http import answers_503_when_unavailable
from functions.stranded import deliver_undelivered_request
from shared.registry import Registry, Run, pending_run
from shared.tables import ConcurrencyError
from shared.workflow import TriggerInfo

pytestmark = pytest.mark.azurite
NOW = datetime.now(UTC)


@dataclass
class Status:
    runtime_status: State | None
    custom_status: Any = None


class Coordinator:
    """The Durable client for one model's coordinator: its state and stage, and the work it was handed."""

    def __init__(self, state: State | None, stage: str | None = None, refuses: bool = False) -> None:
        self.state, self.stage, self.refuses = state, stage, refuses
        self.started: list[dict[str, Any]] = []
        self.raised: list[dict[str, Any]] = []

    async def get_status(self, instance: str) -> Status | None:
        if self.state is None:
            return None
        return Status(self.state, {"model": "m", "stage": self.stage} if self.stage else None)

    async def start_new(self, name: str, instance: str, given: dict[str, Any]) -> str:
        if self.refuses:  # what the SDK raises when the instance changed state under us
            raise Exception("An orchestration with this instance ID already exists (409)")
        self.started.append(given["first_work"])
        return instance

    async def raise_event(self, instance: str, name: str, data: dict[str, Any]) -> None:
        if self.refuses:
            raise Exception("The instance is not running (410)")
        self.raised.append(data)


def _pending(registry: Registry, model: str, number: int, age: timedelta) -> Run:
    run_id = f"{model}-{number:016d}"
    work = {
        "kind": "retrain",
        "run_id": run_id,
        "trigger": {"kind": "manual", "reason": "t", "source_event_id": run_id},
    }
    run = pending_run(model, run_id, "manual", "weekly refresh", run_id, work)
    return registry.create_run(replace(run, created_at=NOW - age))


def _deliver(registry: Registry, model: str, client: Coordinator) -> str | None:
    return asyncio.run(deliver_undelivered_request(client, registry, model, NOW))  # type: ignore[arg-type]


def test_a_request_whose_coordinator_is_gone_starts_one_with_the_oldest_request(registry: Registry) -> None:
    older = _pending(registry, "undelivered-1", 1, timedelta(minutes=40))
    _pending(registry, "undelivered-1", 2, timedelta(minutes=20))
    client = Coordinator(None)
    assert _deliver(registry, "undelivered-1", client) == older.run_id
    assert client.started == [older.details["work"]], "the oldest first; the coordinator finds the rest in storage"


@pytest.mark.parametrize("state", [State.Terminated, State.Failed, State.Completed])
def test_an_ended_coordinator_is_started_again(registry: Registry, state: State) -> None:
    model = f"undelivered-2-{state.value.lower()}"
    run = _pending(registry, model, 1, timedelta(minutes=15))
    client = Coordinator(state)
    assert _deliver(registry, model, client) == run.run_id
    assert client.started == [run.details["work"]]


def test_an_idle_coordinator_is_handed_the_request_it_never_heard_of(registry: Registry) -> None:
    run = _pending(registry, "undelivered-3", 1, timedelta(minutes=15))
    client = Coordinator(State.Running, "idle")
    assert _deliver(registry, "undelivered-3", client) == run.run_id
    assert client.raised == [run.details["work"]]
    assert client.started == []


@pytest.mark.parametrize(
    ("state", "stage", "age"),
    [
        (State.Running, "continuous_training", timedelta(hours=3)),  # waits behind a run: found in storage after it
        (State.Running, "debouncing", timedelta(minutes=15)),
        (State.Running, "idle", timedelta(minutes=2)),  # its event may be on its way
        (None, None, timedelta(minutes=2)),  # the API's own send may still be retrying
    ],
    ids=["busy", "debouncing", "young-idle", "young-no-coordinator"],
)
def test_a_request_the_coordinator_will_pick_up_is_left_alone(
    registry: Registry, state: State | None, stage: str | None, age: timedelta
) -> None:
    model = f"undelivered-4-{stage or 'none'}-{int(age.total_seconds())}"
    _pending(registry, model, 1, age)
    client = Coordinator(state, stage)
    assert _deliver(registry, model, client) is None
    assert (client.started, client.raised) == ([], [])


def test_a_malformed_request_is_never_handed_over_the_next_usable_one_is(registry: Registry) -> None:
    """claim_run cannot take a malformed work item: handed over, it would fail the coordinator's claim, and every
    later tick would find the coordinator Failed and send it again."""
    broken = _pending(registry, "undelivered-8", 1, timedelta(minutes=40))
    registry.update_run("undelivered-8", broken.run_id, lambda r: replace(r, details={"work": {"kind": "retrain"}}))
    usable = _pending(registry, "undelivered-8", 2, timedelta(minutes=20))
    client = Coordinator(State.Failed)
    assert _deliver(registry, "undelivered-8", client) == usable.run_id
    assert client.started == [usable.details["work"]]


def test_a_coordinator_that_cannot_be_reached_is_left_for_the_next_tick(registry: Registry) -> None:
    _pending(registry, "undelivered-5", 1, timedelta(minutes=15))
    assert _deliver(registry, "undelivered-5", Coordinator(State.Terminated, refuses=True)) is None
    assert registry.require_run("undelivered-5", "undelivered-5-0000000000000001").status == "pending"


def test_send_work_gives_up_with_the_run_it_carried(registry: Registry) -> None:
    work = {"kind": "retrain", "run_id": "undelivered-6-0000000000000001"}
    with pytest.raises(CoordinatorUnreachable) as raised:
        asyncio.run(send_work(Coordinator(State.Running, refuses=True), "undelivered-6", work))  # type: ignore[arg-type]
    assert (raised.value.instance, raised.value.run_id) == ("model-undelivered-6", "undelivered-6-0000000000000001")


def _retrain(registry: Registry, model: str, client: Coordinator, key_fingerprint: str = "f") -> func.HttpResponse:
    """The API's queueing of a retrain request (what the retrain route does once the request is checked),
    behind the same 503 guard as the route."""
    run_id = f"{model}-00000000000000a1"
    trigger = TriggerInfo(kind="manual", reason="weekly refresh", source_event_id=run_id)
    run = Run(model, run_id, "manual", "weekly refresh", run_id, status="pending", stage="queued")
    request = func.HttpRequest(method="POST", url=f"http://127.0.0.1/api/models/{model}/retrain", body=b"{}")
    guarded = answers_503_when_unavailable(_queue_run)
    return asyncio.run(guarded(request, client, registry, "retrain", run, trigger, {}, key_fingerprint))  # type: ignore[no-any-return]


def test_a_request_the_coordinator_could_not_take_is_a_503_naming_its_recorded_run(registry: Registry) -> None:
    answer = _retrain(registry, "undelivered-7", Coordinator(State.Running, refuses=True))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    problem = json.loads(answer.get_body())
    assert problem["title"] == "Coordinator unavailable"
    assert problem["run_id"] == "undelivered-7-00000000000000a1"
    assert "recorded as run undelivered-7-00000000000000a1" in problem["detail"]
    assert "same Idempotency-Key" in problem["hint"]
    stored = registry.require_run("undelivered-7", "undelivered-7-00000000000000a1")
    assert stored.status == "pending", "recorded, so nothing is lost"
    assert stored.details["work"]["run_id"] == stored.run_id, "with the work housekeeping sends again"


def test_a_record_other_writers_keep_changing_is_a_503_that_changed_nothing() -> None:
    @answers_503_when_unavailable
    def abort(req: func.HttpRequest) -> func.HttpResponse:
        raise ConcurrencyError("run m-1 kept changing during 8 attempts", "retry later; another writer is busy")

    answer = abort(func.HttpRequest(method="POST", url="http://127.0.0.1/api/runs/m-1/abort", body=b"{}"))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    problem = json.loads(answer.get_body())
    assert problem["title"] == "Busy"
    assert problem["detail"].endswith("nothing was changed")


def test_a_retried_request_sends_the_work_of_its_still_pending_run_again(registry: Registry) -> None:
    """The first attempt was answered 503 before the coordinator had the request; the retry (same
    Idempotency-Key, so the same run id and fingerprint) hands it over."""
    run_id = f"fraud-{uuid.uuid4().hex[:16]}"  # the repository's models/fraud.yaml; an id no other test uses
    work = {
        "kind": "retrain",
        "run_id": run_id,
        "trigger": {"kind": "manual", "reason": "t", "source_event_id": run_id},
    }
    run = pending_run("fraud", run_id, "manual", "weekly refresh", run_id, work)
    registry.create_run(replace(run, details={**run.details, "request_fingerprint": "f"}))
    request = func.HttpRequest(method="POST", url="http://127.0.0.1/api/models/fraud/retrain", body=b"{}")
    client = Coordinator(State.Running, "idle")
    answer = asyncio.run(_earlier_answer(request, client, registry, run_id, "f"))  # type: ignore[arg-type]
    assert answer is not None
    assert answer.status_code == 202
    assert client.raised == [work]

    registry.update_run("fraud", run_id, lambda current: replace(current, status="running", stage="training"))
    client = Coordinator(State.Running, "continuous_training")
    answer = asyncio.run(_earlier_answer(request, client, registry, run_id, "f"))  # type: ignore[arg-type]
    assert answer is not None
    assert answer.status_code == 202
    assert client.raised == [], "a run the coordinator already claimed is not sent again"


def test_an_ended_coordinator_is_started_again_for_landed_blobs_no_run_claimed(activity: Any) -> None:
    """A coordinator that failed (or was terminated) left landed data waiting until some later event restarted
    it; the housekeeping timer starts it again with those blobs. A live one, or nothing waiting, is left alone."""
    from functions import clients
    from functions.stranded import revive_coordinator
    from shared.runtime import get_runtime
    from shared.storage import LANDING

    spec, store, registry = get_runtime().spec("fraud"), clients.store(), clients.registry()

    def revive(client: Coordinator) -> str | None:
        return asyncio.run(revive_coordinator(client, spec, store, registry, NOW))  # type: ignore[arg-type]

    assert revive(Coordinator(State.Failed)) is None, "nothing waits"
    store.container(LANDING).upload_blob("fraud/waiting.csv", b"amount,label\n1,0\n", overwrite=True)
    live = Coordinator(State.Running, stage="idle")
    assert revive(live) is None
    assert live.started == live.raised == []
    for state in (State.Failed, State.Terminated, None):
        ended = Coordinator(state)
        why = revive(ended)
        assert why is not None
        assert "1 landed blob(s) wait" in why
        [work] = ended.started
        assert [b["name"] for b in work["blobs"]] == ["fraud/waiting.csv"]


@pytest.mark.parametrize(
    ("custom", "waiting", "claim_failed"),
    [
        ({"stage": "idle"}, None, None),
        ({"stage": "debouncing", "blobs": 2, "starts_at": "t1", "deadline": "t2"},
         {"blobs": 2, "starts_at": "t1", "deadline": "t2"}, None),
        ({"stage": "claim_failed", "error": "TableLimitError: too large"}, None, "TableLimitError: too large"),
        (None, None, None),
    ],
)  # fmt: skip
def test_the_model_listing_says_when_a_coordinator_cannot_claim_its_work(
    custom: dict[str, Any] | None, waiting: dict[str, Any] | None, claim_failed: str | None
) -> None:
    """GET /api/models reads the coordinator's custom status: a burst it collects (waiting), or why it could not
    start the next run while it pauses (claim_failed), which `perennial models` prints in red."""
    from functions.coordination import coordinator_view

    class Client:
        async def get_status(self, instance: str) -> Status:
            return Status(State.Running, custom)

    assert asyncio.run(coordinator_view(Client(), "fraud")) == (waiting, claim_failed)  # type: ignore[arg-type]
