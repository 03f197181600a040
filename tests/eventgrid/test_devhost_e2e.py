"""End to end through devhost itself: the grid as a component, the worker's trigger objects, shared.events."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.eventgrid import DeliveryOptions, LocalEventGrid
from devhost.host import DevHost
from devhost.threaded import ThreadedHost
from shared.events import parse_event
from shared.publish import EventGridPublisher, RetrainRequested, make_event
from shared.settings import EventGridSettings, StorageSettings
from shared.storage import BlobStore, blob_service_client

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

APP = Path(__file__).with_name("grid_app.py")
KEY = "e2e-topic-key"


@pytest.fixture
def devhost(tmp_path: Path, azurite_connection_string: str) -> Iterator[tuple[ThreadedHost, LocalEventGrid]]:
    host = DevHost(APP, port=0, state_dir=tmp_path)
    grid = LocalEventGrid(
        storage=StorageSettings(azurite_connection_string, None, None, None, None),
        topic_key=KEY,
        options=DeliveryOptions(retry_base_seconds=0.05, max_attempts=3),
        watch_interval=0.1,
    )
    host.add_component(grid)
    threaded = ThreadedHost(host)
    try:
        yield threaded, grid
    finally:
        threaded.stop()


def _received(function: str, needle: str) -> list[Any]:
    events: list[tuple[str, Any]] = sys.modules[APP.stem].EVENTS  # type: ignore[attr-defined]
    return [e for f, e in list(events) if f == function and needle in f"{e.id} {e.subject} {json.dumps(e.get_json())}"]


def _wait(predicate: Any, timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"not within {timeout}s"
        time.sleep(0.01)
    return time.monotonic() - start


def test_blob_upload_invokes_on_blob_created_within_2s(
    devhost: tuple[ThreadedHost, LocalEventGrid], azurite_connection_string: str
) -> None:
    model = f"m{time.monotonic_ns()}"
    store = BlobStore(blob_service_client(StorageSettings(azurite_connection_string, None, None, None, None)), {model})
    store.ensure_containers()
    start = time.monotonic()
    ref = store.upload_landing(model, "batch.csv", b"a,b\n1,2\n")
    _wait(lambda: bool(_received("on_blob_created", model)), timeout=2.0)
    elapsed = time.monotonic() - start
    assert elapsed < 2.0
    [event] = _received("on_blob_created", model)
    trigger = parse_event(event, {model})  # the func.EventGridEvent the worker builds
    assert trigger.blob is not None
    assert (trigger.kind, trigger.blob.url, trigger.blob.etag) == ("blob_created", ref.url, ref.etag)


def test_published_event_reaches_on_alert_event_and_a_failing_one_is_dead_lettered(
    devhost: tuple[ThreadedHost, LocalEventGrid],
) -> None:
    _, grid = devhost
    publisher = EventGridPublisher(EventGridSettings(grid.topic_endpoint("perennial"), KEY))
    ok = make_event(RetrainRequested(model="fraud", reason="scheduled"), event_id=f"ok-{time.monotonic_ns()}")
    boom = make_event(RetrainRequested(model="fraud", reason="explode"), event_id=f"boom-{time.monotonic_ns()}")
    publisher.publish([ok, boom])
    publisher.close()
    _wait(lambda: bool(_received("on_alert_event", ok.id)), timeout=5.0)
    trigger = parse_event(_received("on_alert_event", ok.id)[0], {"fraud"})
    assert (trigger.kind, trigger.reason) == ("retrain_requested", "scheduled")

    folder = grid.deadletter_dir / "perennial-to-alerts"
    _wait(lambda: folder.exists() and any(folder.glob(f"{boom.id}-*.json")), timeout=10.0)
    [path] = folder.glob(f"{boom.id}-*.json")
    letter = json.loads(path.read_text())
    assert (letter["deliveryAttempts"], letter["lastHttpStatusCode"]) == (3, 500)
    assert len(_received("on_alert_event", boom.id)) == 3, "the function saw every retry"
