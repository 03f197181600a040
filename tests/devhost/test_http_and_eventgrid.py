"""HTTP triggers, auth levels, the Event Grid webhook and timers, against patterns_app on real loopback HTTP."""

from __future__ import annotations

import time

import pytest

from tests.devhost.conftest import Harness


def test_http_trigger_sees_route_query_headers_and_body(patterns: Harness) -> None:
    response = patterns.http.post(
        "/api/echo/hello/42", params={"q": "1"}, headers={"x-test": "yes"}, content=b"payload"
    )
    assert response.status_code == 201
    assert response.headers["x-out"] == "yes"
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "method": "POST",
        "route": {"word": "hello", "n": "42"},
        "query": {"q": "1"},
        "header": "yes",
        "body": "payload",
    }


def test_optional_and_constrained_route_parameters(patterns: Harness) -> None:
    assert patterns.http.get("/api/echo/hello").json()["route"] == {"word": "hello"}
    assert patterns.http.get("/api/ECHO/hello/7").status_code == 201  # routes match case-insensitively
    assert patterns.http.get("/API/echo/hello/7").status_code == 201, "the route prefix too"
    assert patterns.http.get("/api/echo/hello/not-a-number").status_code == 404  # {n:int?}


def test_methods_are_enforced_and_async_functions_run(patterns: Harness) -> None:
    assert patterns.http.delete("/api/echo/x").status_code == 405
    response = patterns.http.get("/api/async-echo")
    assert response.status_code == 200
    assert response.text == "async ok"


def test_handler_exception_is_a_500_with_the_reason(patterns: Harness) -> None:
    response = patterns.http.get("/api/boom")
    assert response.status_code == 500
    assert "RuntimeError: handler exploded" in response.json()["detail"]
    # The host keeps serving.
    assert patterns.http.get("/api/async-echo").status_code == 200


@pytest.mark.parametrize("route", ["/api/orchestrators/chaining", "/api/admin-only"])
def test_function_and_admin_levels_need_a_key(patterns: Harness, route: str) -> None:
    assert patterns.http.post(route).status_code == 401
    assert patterns.http.post(route, params={"code": "wrong"}).status_code == 401
    assert patterns.http.post(route, params={"code": patterns.key}).status_code in (200, 202)
    assert patterns.http.post(route, headers={"x-functions-key": patterns.key}).status_code in (200, 202)


def test_a_body_over_the_hosts_limit_is_a_413_and_a_key_that_is_not_text_a_401(patterns: Harness) -> None:
    too_big = patterns.http.post("/api/echo/x", content=b"x" * (100 * 1024 * 1024 + 1))  # Azure's limit: 100 MB
    assert too_big.status_code == 413
    assert too_big.headers["content-type"].startswith("application/problem+json")
    assert "larger than devhost's limit" in too_big.json()["detail"]
    webhook = patterns.http.post(  # the Event Grid webhook answers it the same way
        "/runtime/webhooks/eventgrid",
        params={"functionName": "on_event", "code": patterns.key},
        headers={"aeg-event-type": "Notification"},
        content=b"x" * (100 * 1024 * 1024 + 1),
    )
    assert webhook.status_code == 413
    assert webhook.headers["content-type"].startswith("application/problem+json")
    odd_key = patterns.http.post("/api/admin-only", headers={"x-functions-key": b"\xff\xfe"})
    assert odd_key.status_code == 401
    assert odd_key.headers["content-type"].startswith("application/problem+json")


def test_unknown_route_is_404(patterns: Harness) -> None:
    response = patterns.http.get("/api/nothing-here")
    assert response.status_code == 404
    assert "no HTTP function" in response.json()["detail"]
    line_break = patterns.http.get("/api/nothing%0Ahere")  # aiohttp's own text 404 before: not problem+json
    assert line_break.status_code == 404
    assert line_break.headers["content-type"].startswith("application/problem+json")


def _webhook(patterns: Harness, function: str, kind: str, body: object) -> object:
    return patterns.http.post(
        "/runtime/webhooks/eventgrid",
        params={"functionName": function, "code": patterns.key},
        headers={"aeg-event-type": kind},
        json=body,
    )


VALIDATION = [
    {
        "id": "v1",
        "topic": "/subscriptions/x",
        "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-01-01T00:00:00Z",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
        "dataVersion": "1",
    }
]


def test_eventgrid_subscription_validation_handshake(patterns: Harness) -> None:
    response = _webhook(patterns, "on_event", "SubscriptionValidation", VALIDATION)
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}  # type: ignore[attr-defined]
    for code in (42, {"a": 1}):  # echoed back as they were before
        odd = [{**VALIDATION[0], "data": {"validationCode": code}}]
        refused = _webhook(patterns, "on_event", "SubscriptionValidation", odd)
        assert refused.status_code == 400  # type: ignore[attr-defined]


def test_eventgrid_schema_array_invokes_once_per_event(patterns: Harness) -> None:
    patterns.app.EVENTS.clear()
    events = [
        {
            "id": f"e{i}",
            "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
            "subject": f"/blobServices/default/containers/landing/blobs/fraud/{i}.csv",
            "eventType": "Microsoft.Storage.BlobCreated",
            "eventTime": "2026-01-01T00:00:00Z",
            "data": {"url": f"https://st.blob.core.windows.net/landing/fraud/{i}.csv", "eTag": f"0x{i}"},
            "dataVersion": "1",
        }
        for i in range(3)
    ]
    assert _webhook(patterns, "on_event", "Notification", events).status_code == 200  # type: ignore[attr-defined]
    assert [e["id"] for e in patterns.app.EVENTS] == ["e0", "e1", "e2"]
    first = patterns.app.EVENTS[0]
    assert first["schema"] == "eventgrid"
    assert first["type"] == "Microsoft.Storage.BlobCreated"
    assert first["subject"].endswith("/fraud/0.csv")
    assert first["data"]["eTag"] == "0x0"


def test_cloudevents_single_object_becomes_a_cloud_event(patterns: Harness) -> None:
    patterns.app.EVENTS.clear()
    event = {
        "specversion": "1.0",
        "id": "ce1",
        "source": "/perennial/tests",
        "type": "Perennial.RetrainRequested",
        "subject": "models/fraud",
        "time": "2026-01-01T00:00:00Z",
        "data": {"model": "fraud"},
    }
    assert _webhook(patterns, "on_event", "Notification", event).status_code == 200  # type: ignore[attr-defined]
    assert patterns.app.EVENTS == [
        {
            "schema": "cloudevents",
            "id": "ce1",
            "type": "Perennial.RetrainRequested",
            "source": "/perennial/tests",
            "subject": "models/fraud",
            "data": {"model": "fraud"},
        }
    ]


def test_eventgrid_errors_say_what_is_wrong(patterns: Harness) -> None:
    assert _webhook(patterns, "nope", "Notification", VALIDATION).status_code == 404  # type: ignore[attr-defined]
    bad = _webhook(patterns, "on_event", "Notification", [{"id": "x"}])
    assert bad.status_code == 400  # type: ignore[attr-defined]
    assert "eventType" in bad.json()["detail"]  # type: ignore[attr-defined]
    not_json = patterns.http.post(
        "/runtime/webhooks/eventgrid",
        params={"functionName": "on_event", "code": patterns.key},
        headers={"aeg-event-type": "Notification"},
        content=b"{not json",
    )
    assert not_json.status_code == 400
    not_utf8 = patterns.http.post(
        "/runtime/webhooks/eventgrid",
        params={"functionName": "on_event", "code": patterns.key},
        headers={"aeg-event-type": "Notification"},
        content=b'[{"id": "\xff"}]',
    )
    assert not_utf8.status_code == 400
    assert _webhook(patterns, "on_event", "Bogus", VALIDATION).status_code == 400  # type: ignore[attr-defined]
    keyless = patterns.http.post(
        "/runtime/webhooks/eventgrid", params={"functionName": "on_event"}, headers={"aeg-event-type": "Notification"}
    )
    assert keyless.status_code == 401


def test_timer_runs_on_startup_and_on_schedule(patterns: Harness) -> None:
    ticks = patterns.app.TICKS
    assert ticks[0] == {"past_due": False}  # run_on_startup
    before = len(ticks)
    patterns.advance(5 * 60)
    # The timer runner wakes on the clock asynchronously: wait for its one tick (and no second one).
    deadline = time.monotonic() + 10
    while len(ticks) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert len(ticks) == before + 1


def test_clock_admin_endpoint(patterns: Harness) -> None:
    before = patterns.http.get("/admin/clock").json()
    assert before["virtual"] is True
    after = patterns.advance(10)
    assert after["now"] > before["now"]
    assert patterns.http.post("/admin/clock", json={"advance_seconds": -1}).status_code == 400


def test_a_bad_event_does_not_hold_back_the_good_ones_of_its_delivery(patterns: Harness) -> None:
    patterns.app.EVENTS.clear()
    good = {**VALIDATION[0], "id": "good", "eventType": "Perennial.RetrainRequested", "data": {"model": "fraud"}}
    missing = {"id": "missing-fields"}
    bad_time = {**good, "id": "bad-time", "eventTime": "yesterday"}
    response = _webhook(patterns, "on_event", "Notification", [missing, good, bad_time])
    # 400, not 500: Event Grid dead-letters the delivery at once (the bad events are kept, nothing retries them
    # for hours); the good event has run.
    assert response.status_code == 400  # type: ignore[attr-defined]
    detail = response.json()["detail"]  # type: ignore[attr-defined]
    assert "'missing-fields'" in detail
    assert "'bad-time' cannot be decoded" in detail
    assert [e["id"] for e in patterns.app.EVENTS] == ["good"]
