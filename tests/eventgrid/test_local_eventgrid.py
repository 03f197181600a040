"""The local Event Grid against Azurite and a real HTTP receiver: blobs, custom topics, retries, dead letters."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devhost.components import Component
from devhost.eventgrid import DeliveryOptions, LocalEventGrid
from shared.events import parse_event
from shared.publish import (
    EventGridPublisher,
    PublishError,
    RetrainRequested,
    RunCompleted,
    make_event,
)
from shared.settings import EventGridSettings, StorageSettings
from shared.storage import BlobStore, blob_service_client
from tests.eventgrid.conftest import FAST, TOPIC_KEY, running_grid
from tests.events import samples

pytestmark = pytest.mark.azurite


def _store(cs: str, model: str) -> BlobStore:
    store = BlobStore(blob_service_client(StorageSettings(cs, None, None, None, None)), {model})
    store.ensure_containers()
    return store


def test_the_grid_is_a_devhost_component() -> None:
    assert isinstance(LocalEventGrid(), Component)


def test_blob_upload_reaches_the_subscribed_function_within_2s(
    tmp_path: Path, azurite_connection_string: str, model: str
) -> None:
    store = _store(azurite_connection_string, model)

    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string) as (_, receiver):
            ref = await asyncio.to_thread(store.upload_landing, model, "2026/batch-1.csv", b"a,b\n1,2\n")
            elapsed = await receiver.wait_for(lambda: bool(receiver.events("on_blob_created", model)), timeout=2.0)
            assert elapsed < 2.0
            [delivery] = [d for d in receiver.deliveries if model in json.dumps(d.events)]
            assert delivery.function == "on_blob_created"
            assert delivery.headers["aeg-event-type"] == "Notification"
            assert delivery.headers["x-functions-key"] == "host-key"
            [event] = delivery.events
            trigger = parse_event(event, {model})
            assert trigger.kind == "blob_created"
            assert trigger.model == model
            assert trigger.actionable
            assert trigger.blob is not None
            assert (trigger.blob.url, trigger.blob.etag, trigger.blob.size) == (ref.url, ref.etag, ref.size)
            assert trigger.blob.name == f"{model}/2026/batch-1.csv"

            # An overwrite is a new version: a second event with the new eTag.
            new = await asyncio.to_thread(store.upload_landing, model, "2026/batch-1.csv", b"a,b\n3,4\n")
            await receiver.wait_for(lambda: len(receiver.events("on_blob_created", model)) == 2, timeout=2.0)
            second = parse_event(receiver.events("on_blob_created", model)[1], {model})
            assert second.blob is not None
            assert second.blob.etag == new.etag != ref.etag
            assert int(second.blob.sequencer or "0", 16) > int(trigger.blob.sequencer or "0", 16)

            # Blobs outside landing/ are not announced.
            await asyncio.to_thread(store.container("quarantine").upload_blob, f"{model}/x.csv", b"x", overwrite=True)
            await asyncio.sleep(0.4)
            assert len(receiver.events(None, model)) == 2

    asyncio.run(scenario())


def test_blobs_landed_while_stopped_are_announced_on_restart(
    tmp_path: Path, azurite_connection_string: str, model: str
) -> None:
    store = _store(azurite_connection_string, model)

    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string):
            pass
        await asyncio.to_thread(store.upload_landing, model, "while-down.csv", b"x\n1\n")
        async with running_grid(tmp_path, azurite_connection_string) as (_, receiver):
            await receiver.wait_for(lambda: bool(receiver.events("on_blob_created", model)), timeout=2.0)

    asyncio.run(scenario())


def test_custom_event_from_the_real_publisher_client_reaches_its_function(
    tmp_path: Path, azurite_connection_string: str
) -> None:
    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string) as (running, receiver):
            endpoint = running.grid.topic_endpoint("perennial")
            publisher = EventGridPublisher(EventGridSettings(endpoint, TOPIC_KEY))
            event = make_event(RetrainRequested(model="fraud", reason="model is 31 days old"), event_id="evt-retrain-1")
            await asyncio.to_thread(publisher.publish, [event])
            await receiver.wait_for(lambda: bool(receiver.events("on_alert_event", "evt-retrain-1")))
            [delivered] = receiver.events("on_alert_event", "evt-retrain-1")
            assert delivered["topic"].endswith("/topics/perennial")
            trigger = parse_event(delivered, {"fraud"})
            assert (trigger.kind, trigger.model, trigger.reason, trigger.event_id) == (
                "retrain_requested",
                "fraud",
                "model is 31 days old",
                "evt-retrain-1",
            )

            wrong = EventGridPublisher(EventGridSettings(endpoint, "not-the-key"))
            with pytest.raises(PublishError) as info:
                await asyncio.to_thread(wrong.publish, [event])
            assert "PERENNIAL_EVENTGRID_KEY" in info.value.hint
            publisher.close()
            wrong.close()

    asyncio.run(scenario())


def test_custom_topic_rejects_malformed_batches_like_event_grid(tmp_path: Path, azurite_connection_string: str) -> None:
    async def post(url: str, body: Any, key: str = TOPIC_KEY) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url, data=body if isinstance(body, bytes) else json.dumps(body), headers={"aeg-sas-key": key}
            ) as r,
        ):
            return r.status, await r.json(content_type=None) if r.status != 200 else None

    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string) as (running, receiver):
            url = running.grid.topic_endpoint("perennial")
            good = make_event(RunCompleted(model="fraud", run_id="r1", status="succeeded")).to_dict()
            assert (await post(url, [good]))[0] == 200
            assert (await post(url, [good], key="bad"))[0] == 401
            assert (await post(url, [good], key="clé"))[0] == 401, "any header text is compared, not a 500"
            assert (await post(url, b"[" * 100_000))[0] == 400, "nested past the JSON parser's depth"
            status, body = await post(url, [{**good, "id": None}])
            assert status == 400
            assert "id is required" in body["error"]["message"]
            status, body = await post(url, [{**good, "eventTime": "yesterday"}])  # not retried for 25 minutes
            assert status == 400
            assert "cannot be decoded" in body["error"]["message"]
            assert (await post(url, b"not json"))[0] == 400
            assert (await post(url, {"not": "a list"}))[0] == 400
            assert (await post(url.replace("/perennial/", "/nope/"), [good]))[0] == 404
            assert (await post(url, [{**good, "data": "x" * (1024 * 1024)}]))[0] == 413
            await receiver.wait_for(lambda: len(receiver.deliveries) == 1)
            await asyncio.sleep(0.2)
            assert len(receiver.deliveries) == 1, "only the valid, authorised event is delivered"

    asyncio.run(scenario())


def test_azureml_topic_delivers_only_subscribed_types(tmp_path: Path, azurite_connection_string: str) -> None:
    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string) as (running, receiver):
            running.grid.publish("azureml", [samples.RUN_STATUS, samples.ML_MODEL_REGISTERED, samples.DRIFT])
            await running.grid.deliverer.drain(5)  # type: ignore[union-attr]
            types = sorted(e["eventType"] for e in receiver.events("on_alert_event"))
            # Not the run status changes: the app follows its jobs by polling (infra/wiring.bicep subscribes the same).
            assert types == [samples.DRIFT["eventType"]]

    asyncio.run(scenario())


def test_a_failing_function_gets_retries_with_backoff_then_a_dead_letter(
    tmp_path: Path, azurite_connection_string: str
) -> None:
    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string, status=lambda f, n: 500) as (running, receiver):
            event = make_event(RetrainRequested(model="fraud", reason="x"), event_id="evt-fails").to_dict()
            running.grid.publish("perennial", [event])
            await running.grid.deliverer.drain(10)  # type: ignore[union-attr]
            attempts = [d for d in receiver.deliveries if "evt-fails" in json.dumps(d.events)]
            assert len(attempts) == FAST.max_attempts == 3
            assert [d.headers["aeg-delivery-count"] for d in attempts] == ["0", "1", "2"]
            gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
            assert gaps[0] >= 0.05
            assert gaps[1] >= 0.1, f"backoff must grow: {gaps}"
            [letter_path] = (running.grid.deadletter_dir / "perennial-to-alerts").glob("evt-fails-*.json")
            letter = json.loads(letter_path.read_text())
            assert letter["id"] == "evt-fails"
            assert letter["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
            assert letter["deliveryAttempts"] == 3
            assert letter["lastHttpStatusCode"] == 500

    asyncio.run(scenario())


def test_a_transient_failure_is_retried_until_delivered(tmp_path: Path, azurite_connection_string: str) -> None:
    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string, status=lambda f, n: 503 if n < 3 else 200) as (
            running,
            _receiver,
        ):
            running.grid.publish("perennial", [make_event(RetrainRequested(model="fraud", reason="x")).to_dict()])
            await running.grid.deliverer.drain(10)  # type: ignore[union-attr]
            [record] = running.grid.deliverer.records  # type: ignore[union-attr]
            assert (record.outcome, record.attempts) == ("delivered", 3)
            assert not running.grid.deadletter_dir.exists() or not any(running.grid.deadletter_dir.rglob("*.json"))

    asyncio.run(scenario())


def test_a_bad_request_is_dead_lettered_without_retries(tmp_path: Path, azurite_connection_string: str) -> None:
    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string, status=lambda f, n: 400) as (running, receiver):
            running.grid.publish("perennial", [make_event(RetrainRequested(model="fraud", reason="x")).to_dict()])
            await running.grid.deliverer.drain(10)  # type: ignore[union-attr]
            assert len(receiver.deliveries) == 1
            [letter] = running.grid.deadletter_dir.rglob("*.json")
            assert json.loads(letter.read_text())["deadLetterReason"] == "DeliveryFailed"

    asyncio.run(scenario())


def test_an_unreachable_host_is_retried_then_dead_lettered(tmp_path: Path, azurite_connection_string: str) -> None:
    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string) as (running, receiver):
            await receiver.stop()  # the host is down
            running.grid.publish("perennial", [make_event(RetrainRequested(model="fraud", reason="x")).to_dict()])
            await running.grid.deliverer.drain(10)  # type: ignore[union-attr]
            [record] = running.grid.deliverer.records  # type: ignore[union-attr]
            assert (record.outcome, record.attempts, record.last_status) == ("deadlettered", 3, None)

    asyncio.run(scenario())


def test_duplicates_on_purpose(tmp_path: Path, azurite_connection_string: str) -> None:
    options = DeliveryOptions(retry_base_seconds=0.05, max_attempts=3, duplicate_probability=1.0, seed=1)

    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string, options=options) as (running, receiver):
            event = make_event(RetrainRequested(model="fraud", reason="x"), event_id="evt-dup").to_dict()
            running.grid.publish("perennial", [event])
            await running.grid.deliverer.drain(5)  # type: ignore[union-attr]
            assert [e["id"] for e in receiver.events("on_alert_event")] == ["evt-dup", "evt-dup"]

    asyncio.run(scenario())


def test_deliveries_endpoint_reports_outcomes(tmp_path: Path, azurite_connection_string: str) -> None:
    async def scenario() -> None:
        async with running_grid(tmp_path, azurite_connection_string) as (running, _):
            running.grid.publish(
                "perennial", [make_event(RetrainRequested(model="fraud", reason="x"), event_id="e1").to_dict()]
            )
            await running.grid.deliverer.drain(5)  # type: ignore[union-attr]
            deliveries = f"{running.url}/eventgrid/deliveries"
            async with aiohttp.ClientSession() as session:
                async with session.get(deliveries) as r:
                    assert r.status == 401, "the events carry the app's data: not for anyone on the machine"
                async with session.get(deliveries, headers={"aeg-sas-key": TOPIC_KEY}) as r:
                    [record] = await r.json()
            assert (record["event_id"], record["outcome"], record["function"]) == ("e1", "delivered", "on_alert_event")

    asyncio.run(scenario())


def test_storage_that_cannot_be_reached_stops_start_up_with_the_fix(tmp_path: Path) -> None:
    from devhost.errors import ConfigError
    from tests.azurite import ACCOUNT, KEY, free_port

    closed = f"http://127.0.0.1:{free_port()}/{ACCOUNT}"
    unreachable = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={closed};"

    async def scenario() -> None:
        async with running_grid(tmp_path, unreachable):
            raise AssertionError("the grid started without its storage")

    started = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        asyncio.run(scenario())
    assert time.monotonic() - started < 15, "seconds, not the SDK's default minute and a half of back-off"
    assert "cannot watch container 'landing': storage cannot be reached" in raised.value.message
    assert "perennial up" in raised.value.hint
