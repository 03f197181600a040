"""The CLI's client sends a request again when the host says it was busy (503 with a short Retry-After), and a
request that starts a run keeps one Idempotency-Key across its attempts, so it is one run however often it is sent."""

from __future__ import annotations

import json

import httpx
import pytest

from perennial_cli.client import BUSY_ATTEMPTS, PerennialClient, ProblemError


def _busy(title: str, retry_after: str) -> httpx.Response:
    body = {"type": "about:blank", "title": title, "status": 503, "detail": "try again", "hint": "send it again"}
    headers = {"content-type": "application/problem+json", "retry-after": retry_after}
    return httpx.Response(503, headers=headers, content=json.dumps(body).encode())


def _client(answers: list[httpx.Response]) -> tuple[PerennialClient, list[httpx.Request], list[float], list[str]]:
    seen: list[httpx.Request] = []
    slept: list[float] = []
    notes: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    client = PerennialClient(
        "http://127.0.0.1:7071", "k", transport=httpx.MockTransport(handle), on_wait=notes.append, sleep=slept.append
    )
    return client, seen, slept, notes


def test_a_busy_coordinator_is_asked_again_with_the_same_idempotency_key() -> None:
    accepted = httpx.Response(202, json={"run_id": "fraud-00000000000000c1", "model": "fraud", "reason": "r"})
    client, seen, slept, notes = _client([_busy("Coordinator unavailable", "5"), _busy("Busy", "5"), accepted])
    answer = client.retrain("fraud", "weekly", "dana")
    assert answer.run_id == "fraud-00000000000000c1"
    assert len(seen) == 3
    keys = {request.headers["idempotency-key"] for request in seen}
    assert len(keys) == 1, "one run, however often it was sent"
    assert slept == [5.0, 5.0]
    assert notes[0] == "the host answered 503 Coordinator unavailable; asking again in 5 s (1/3)"


def test_each_retrain_command_is_a_new_request() -> None:
    accepted = httpx.Response(202, json={"run_id": "fraud-00000000000000c2", "model": "fraud", "reason": "r"})
    client, seen, _, _ = _client([accepted])
    client.retrain("fraud", None, None)
    client.retrain("fraud", None, None)
    assert seen[0].headers["idempotency-key"] != seen[1].headers["idempotency-key"]


def test_unreachable_storage_is_reported_not_waited_on() -> None:
    client, seen, slept, _ = _client([_busy("Storage unavailable", "30")])
    with pytest.raises(ProblemError) as raised:
        client.runs("fraud")
    assert raised.value.status == 503
    assert (len(seen), slept) == (1, [])


def test_a_host_that_stays_busy_is_reported_after_the_last_attempt() -> None:
    client, seen, slept, _ = _client([_busy("Busy", "5")])
    with pytest.raises(ProblemError) as raised:
        client.abort("fraud-00000000000000c3")
    assert raised.value.problem.title == "Busy"
    assert len(seen) == BUSY_ATTEMPTS
    assert slept == [5.0] * (BUSY_ATTEMPTS - 1)
