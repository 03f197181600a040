"""Bad API requests get a 4xx problem+json that names the field — never a 500; storage that cannot be
reached is a 503 that says what to do."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import pytest

from perennial_cli.client import PerennialClient, ProblemError
from tests.azurite import Azurite
from tests.e2e.harness import KEY, PerennialHost

pytestmark = [pytest.mark.slow, pytest.mark.azurite]


def _problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["status"] == status
    assert body["detail"]
    return body


def test_bad_requests_are_4xx_problems(perennial: PerennialHost) -> None:
    http = perennial.http
    assert _problem(http.post("/api/models/nope/retrain", json={}), 404)["field"] == "model"
    assert _problem(http.post("/api/models/fraud/retrain", content=b"{not json"), 400)["field"] == "body"
    assert _problem(http.post("/api/models/fraud/retrain", json=[1, 2]), 400)["field"] == "body"
    assert _problem(http.post("/api/models/fraud/retrain", json={"reason": 7}), 400)["field"] == "reason"
    assert _problem(http.post("/api/models/fraud/retrain", json={"blobs": "x.csv"}), 400)["field"] == "blobs"
    empty = _problem(http.post("/api/models/fraud/retrain", json={"blobs": ["landing/fraud/a.csv", ""]}), 400)
    assert empty["field"] == "blobs[1]"
    assert 'blobs[1] is "": each entry must be a blob name' in str(empty["detail"])
    colour = _problem(http.post("/api/models/fraud/retrain", json={"colour": "red"}), 400)
    assert colour["field"] == "colour"
    assert "'blobs'" in str(colour["detail"]), "the fields a retrain request may carry, blobs included"
    # A data selection is checked before a run starts: unsafe, another model's, or not there.
    for blobs, says in (
        (["landing/fraud/ok.csv", "../etc/passwd"], "'..' segment"),
        (["landing/other/x.csv"], "unknown model"),
        (["landing/fraud/never-landed.csv"], "there is no blob landing/fraud/never-landed.csv"),
        # The same blob twice (spelt two ways) was validated once per entry, and published an event each time.
        (["landing/fraud/a.csv", "fraud/a.csv"], "'fraud/a.csv' names the same blob as blobs[0]"),
    ):
        response = http.post("/api/models/fraud/retrain", json={"blobs": blobs})
        body = _problem(response, 400)
        assert body["field"] == f"blobs[{len(blobs) - 1}]", body
        assert says in str(body["detail"])
        assert str(body["detail"]).count("(") == 1, "the hint once, not twice"
    many = _problem(
        http.post("/api/models/fraud/retrain", json={"blobs": [f"fraud/{i}.csv" for i in range(1001)]}), 400
    )
    assert (many["field"], "at most 1,000" in str(many["detail"])) == ("blobs", True)
    nothing = _problem(http.post("/api/models/fraud/retrain", json={"blobs": []}), 400)
    assert (nothing["field"], "blobs is empty" in str(nothing["detail"])) == ("blobs", True)
    assert http.get("/api/models/fraud/runs").json()["runs"] == [], "no run was started for a refused request"
    assert _problem(http.get("/api/models/fraud/runs?limit=0"), 400)["field"] == "limit"
    assert _problem(http.get("/api/runs/nope-123"), 404)["field"] == "id"
    assert _problem(http.get("/api/runs/fraud-0000000000000000"), 404)
    assert _problem(http.post("/api/runs/fraud-0000000000000000/approve", json={}), 404)
    assert _problem(http.post("/api/runs/fraud-0000000000000000/abort"), 404)
    # Shapes that once slipped past the checks into a 500.
    deep = _problem(http.post("/api/models/fraud/retrain", content=b"[" * 100_000 + b"]" * 100_000), 400)
    assert "nested too deeply" in str(deep["detail"])
    assert _problem(http.post("/api/models/fraud/retrain", content=b" " * (1024 * 1024 + 1)), 413)["field"] == "body"
    assert _problem(http.get("/api/models/fraud/runs", params={"limit": "²"}), 400)["field"] == "limit"
    assert _problem(http.post("/api/models/fraud/versions/²/rollout", json={}), 400)["field"] == "version"
    # Text that is not Unicode (a lone surrogate in JSON, non-UTF-8 header bytes) is refused, not a 500 later.
    assert (
        _problem(http.post("/api/models/fraud/retrain", content=b'{"request_id": "\\ud800"}'), 400)["field"]
        == "request_id"
    )
    assert _problem(http.post("/api/models/fraud/retrain", content=b'{"reason": "\\ud800"}'), 400)["field"] == "reason"
    odd_key = {"Idempotency-Key": b"\xff"}
    assert (
        _problem(http.post("/api/models/fraud/rollback", json={}, headers=odd_key), 400)["field"] == "Idempotency-Key"
    )
    assert _problem(http.post("/api/models/fraud/retrain", json={}, headers=odd_key), 400)["field"] == "Idempotency-Key"
    wordy = _problem(http.post("/api/models/fraud/retrain", json={"reason": "x" * 1001}), 400)
    assert wordy["field"] == "reason"
    assert "at most 1,000 characters" in str(wordy["detail"])
    alert = {"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": {"alertId": "a"}}}
    assert _problem(http.post("/api/alerts/azure-monitor", json=alert), 400)["field"]
    # An alert sent to the retrain route would have started a run without the alert's rules (even a Resolved one).
    misrouted = _problem(http.post("/api/models/fraud/retrain", json=alert), 400)
    assert misrouted["field"] == "schemaId"
    assert "/api/alerts/azure-monitor" in str(misrouted["detail"])
    assert http.get("/api/models/fraud/runs").json()["runs"] == [], "no run was started for a refused request"
    # Without a key, or with one that is not even text: 401, not a 500.
    assert httpx.get(f"{perennial.base_url}/api/models").status_code == 401
    assert _problem(httpx.get(f"{perennial.base_url}/api/models", headers={"x-functions-key": b"\xff"}), 401)
    assert httpx.get(f"{perennial.base_url}/api/health").status_code == 200


def test_approve_on_a_finished_run_is_a_409(perennial: PerennialHost) -> None:
    from shared.registry import Run

    perennial.registry.create_run(Run("fraud", "fraud-00000000000000aa", "manual", "test", "e1", status="promoted"))
    body = _problem(perennial.http.post("/api/runs/fraud-00000000000000aa/approve", json={"by": "me"}), 409)
    assert "awaiting_approval" in str(body["detail"])
    assert _problem(perennial.http.post("/api/runs/fraud-00000000000000aa/abort"), 409)


def test_a_run_waiting_for_approval_says_what_it_would_ship_and_until_when(perennial: PerennialHost) -> None:
    from shared.registry import Run

    run_id = "fraud-00000000000000cd"
    until = "2026-12-02T09:00:00+00:00"
    details = {"awaiting_approval": {"version": "4", "until": until}}
    waiting = Run(
        "fraud", run_id, "manual", "test", run_id, status="running", stage="awaiting_approval", details=details
    )
    perennial.registry.create_run(waiting)
    body = perennial.http.get(f"/api/runs/{run_id}").json()
    assert body["approval"] == {"version": "4", "until": until}
    perennial.registry.update_run("fraud", run_id, lambda r: replace(r, status="rejected", stage="done"))
    assert perennial.http.get(f"/api/runs/{run_id}").json()["approval"] is None, "an ended run waits for nobody"


def test_answers_and_aborts_check_their_bodies(perennial: PerennialHost) -> None:
    from shared.registry import Run

    run_id = "fraud-00000000000000cc"
    waiting = Run("fraud", run_id, "manual", "test", run_id, status="running", stage="awaiting_approval")
    perennial.registry.create_run(waiting)
    http = perennial.http
    # "approved": false sent to /approve must not approve anything: it is not a field there.
    assert _problem(http.post(f"/api/runs/{run_id}/approve", json={"approved": False}), 400)["field"] == "approved"
    assert _problem(http.post(f"/api/runs/{run_id}/reject", json={"by": {"name": "x"}}), 400)["field"] == "by"
    # A null is a field left out; nothing waits for this hand-made run, so the answer is refused with 409.
    assert "cannot take an answer" in str(_problem(http.post(f"/api/runs/{run_id}/approve", json={"by": None}), 409))
    assert _problem(http.post(f"/api/runs/{run_id}/abort", content=b"{bad json"), 400)["field"] == "body"
    assert _problem(http.post(f"/api/runs/{run_id}/abort", json={"reason": 3}), 400)["field"] == "reason"
    run = perennial.registry.get_run("fraud", run_id)
    assert run is not None
    assert not run.abort_requested, "a refused abort changes nothing"
    assert http.post(f"/api/runs/{run_id}/abort", json={"by": "ops", "reason": "wrong data"}).status_code == 202


def test_a_retried_request_gets_the_run_it_started(perennial: PerennialHost) -> None:
    from shared.registry import Champion, ModelVersion

    http = perennial.http
    key = {"Idempotency-Key": "retry-me-1"}
    first = http.post("/api/models/fraud/retrain", json={"reason": "first"}, headers=key)
    assert first.status_code == 202, first.text
    run_id = first.json()["run_id"]
    again = http.post("/api/models/fraud/retrain", json={"reason": "first"}, headers=key)
    assert again.status_code in (200, 202), again.text  # not 409 naming its own run
    assert again.json()["run_id"] == run_id
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"].endswith(f"/api/runs/{run_id}")
    # A null is a field left out (docs/api.md): the same request, not another one, nor an unknown field.
    spelled = http.post("/api/models/fraud/retrain", json={"reason": "first", "blobs": None, "note": None}, headers=key)
    assert spelled.status_code in (200, 202), spelled.text
    assert spelled.json()["run_id"] == run_id
    other = _problem(http.post("/api/models/fraud/retrain", json={"reason": "another"}, headers=key), 422)
    assert other["field"] == "Idempotency-Key"
    assert other["run_id"] == run_id
    assert [r["run_id"] for r in perennial.runs()] == [run_id], "one run, however often it was asked for"
    # A retry whose selected blob has gone since (quarantined by its run, say) still gets its run, not a 400.
    perennial.registry.update_run("fraud", run_id, lambda run: replace(run, status="no_valid_data", stage="done"))
    perennial.land("chosen.csv", b"transaction_id\n1\n")
    chosen = {"blobs": ["landing/fraud/chosen.csv"]}
    selected = http.post("/api/models/fraud/retrain", json=chosen, headers={"Idempotency-Key": "sel-1"})
    assert selected.status_code == 202, selected.text
    perennial.store.container("landing").delete_blob("fraud/chosen.csv")
    retried = http.post("/api/models/fraud/retrain", json=chosen, headers={"Idempotency-Key": "sel-1"})
    assert retried.status_code == 202, retried.text
    assert retried.json()["run_id"] == selected.json()["run_id"]
    too_long = {"Idempotency-Key": "k" * 201}
    assert _problem(http.post("/api/models/fraud/retrain", json={}, headers=too_long), 400)["field"]

    # A version spelled '02' is version 2: the champion already, so no run starts.
    for version in ("1", "2"):
        perennial.registry.register_version(ModelVersion("fraud", version, f"r{version}", "c0", "manual", "t", "e", ""))
    perennial.registry.set_champion(Champion("fraud", "2", "r2", deployment="fraud-v2", previous_version="1"))
    assert _problem(http.post("/api/models/fraud/versions/02/rollout", json={}), 409)["title"] == "Already the champion"

    # A retried rollback gets the first answer again, versions included (not a second rollback).
    done = selected.json()["run_id"]
    perennial.registry.update_run("fraud", done, lambda run: replace(run, status="no_valid_data", stage="done"))
    rollback_key = {"Idempotency-Key": "rb-1"}
    back = http.post("/api/models/fraud/rollback", json={"reason": "bad week"}, headers=rollback_key)
    assert back.status_code == 202, back.text
    replayed = http.post("/api/models/fraud/rollback", json={"reason": "bad week"}, headers=rollback_key)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json()["run_id"] == back.json()["run_id"]
    assert (replayed.json()["from_version"], replayed.json()["to_version"]) == ("2", "1")


def test_a_rollback_in_progress_cannot_be_aborted(perennial: PerennialHost) -> None:
    from shared.registry import Run

    run_id = "fraud-00000000000000bb"
    perennial.registry.create_run(Run("fraud", run_id, "rollback", "false declines", run_id, status="running"))
    body = _problem(perennial.http.post(f"/api/runs/{run_id}/abort"), 409)
    assert body["title"] == "A rollback cannot be aborted"
    assert "POST /api/models/fraud/versions/<version>/rollout" in str(body["detail"])
    run = perennial.registry.get_run("fraud", run_id)
    assert run is not None
    assert not run.abort_requested
    # Nor is another run started meanwhile; the 409 does not suggest the abort it would refuse.
    busy = _problem(perennial.http.post("/api/models/fraud/retrain", json={}), 409)
    assert "wait for it to end" in str(busy["detail"])
    assert "abort" not in str(busy["detail"])


def test_an_abort_closes_a_run_that_nothing_runs(perennial: PerennialHost) -> None:
    """A run whose orchestration is gone (terminated or purged by an operator, its crash record lost) or a
    request still queued: the abort closes it at once, so the model can train again."""
    from datetime import UTC, datetime, timedelta

    from shared.registry import Run

    http = perennial.http
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    for run_id, kind in (("fraud-00000000000000d1", "manual"), ("fraud-00000000000000d2", "rollback")):
        stuck = Run("fraud", run_id, kind, "test", run_id, status="running", stage="training", updated_at=long_ago)
        perennial.registry.create_run(stuck)
        busy = _problem(http.post("/api/models/fraud/retrain", json={}), 409)
        assert run_id in str(busy["detail"])
        answer = http.post(f"/api/runs/{run_id}/abort", json={"by": "ops", "reason": "stuck"})
        assert answer.status_code == 200, answer.text
        # Its RunCompleted goes to devhost's own topic, served on the loop the route runs on: published on that
        # loop, it waited out the topic client's 30 s timeout, holding up every request meanwhile.
        assert answer.elapsed.total_seconds() < 10, answer.elapsed
        assert answer.json() == {"run_id": run_id, "status": "aborted", "abort": "done"}
        run = perennial.registry.require_run("fraud", run_id)
        assert (run.status, run.stage) == ("aborted", "done")
        assert run.decision_reasons == [
            f"aborted on request by ops (stuck) (its orchestration {run_id} does not exist)"
        ], run.decision_reasons

    queued = Run("fraud", "fraud-00000000000000d3", "manual", "test", "e3", status="pending", stage="queued")
    perennial.registry.create_run(queued)
    answer = http.post("/api/runs/fraud-00000000000000d3/abort", json={})
    assert answer.status_code == 200, answer.text
    assert answer.elapsed.total_seconds() < 10, answer.elapsed
    run = perennial.registry.require_run("fraud", "fraud-00000000000000d3")
    assert run.decision_reasons == ["aborted on request by api (before it started)"]
    started = http.post("/api/models/fraud/retrain", json={"reason": "after the clean-up"})
    assert started.status_code == 202, started.text
    perennial.registry.update_run(
        "fraud", started.json()["run_id"], lambda r: replace(r, status="failed", stage="done")
    )


def test_a_request_its_coordinator_never_heard_of_is_handed_over_by_housekeeping(perennial: PerennialHost) -> None:
    """A request recorded as pending whose work never reached the coordinator (the API answered 503, or the event
    was lost while the coordinator waited idle) would block the model for good: the housekeeping timer hands it
    over, and it runs."""
    from datetime import UTC, datetime, timedelta

    from shared.registry import pending_run
    from shared.workflow import TriggerInfo

    run_id = "fraud-00000000000000e1"
    trigger = TriggerInfo(kind="manual", reason="lost on its way", source_event_id=run_id)
    work = {"kind": "retrain", "run_id": run_id, "trigger": trigger.dump()}
    recorded = pending_run("fraud", run_id, "manual", "lost on its way", run_id, work)
    perennial.registry.create_run(replace(recorded, created_at=datetime.now(UTC) - timedelta(minutes=30)))
    assert _problem(perennial.http.post("/api/models/fraud/retrain", json={}), 409)["run_id"] == run_id
    # The timer fires every ten minutes of the host's virtual clock.
    ran = perennial.wait_for(
        "the pending request to be run",
        lambda: perennial.registry.require_run("fraud", run_id).status != "pending" or None,
        timeout=120,
        advance=120,
    )
    assert ran
    assert "delivered pending request fraud-00000000000000e1 again" in perennial.log_tail(2000)


def test_storage_that_cannot_be_reached_is_a_503_with_what_to_do(
    perennial: PerennialHost, fresh_azurite: Azurite
) -> None:
    fresh_azurite.stop()
    for method, path, body in (
        ("GET", "/api/models/fraud/runs", None),  # tables
        ("POST", "/api/models/fraud/retrain", {"blobs": ["landing/fraud/day1.csv"]}),  # blobs first
    ):
        started = time.monotonic()
        response = perennial.http.request(method, path, json=body)
        elapsed = time.monotonic() - started
        problem = _problem(response, 503)
        assert response.headers["Retry-After"] == "30"
        assert "storage account could not be reached" in str(problem["detail"])
        assert "perennial up" in str(problem["hint"])
        # About 5 s (tables) and 17 s (blobs), not the blob SDK's default back-off (86 s) and then a bare 500.
        assert elapsed < 30, f"{method} {path} took {elapsed:.1f} s"
    # The CLI's client shows the host's advice as its fix line.
    with pytest.raises(ProblemError) as raised:
        PerennialClient(perennial.base_url, KEY, timeout=60).runs("fraud")
    assert raised.value.status == 503
    assert raised.value.hint.startswith("retry later; locally, start Azurite")
    # The local Event Grid keeps watching the landing container, and says so once, not every poll
    # (a poll fails after the SDK's one quick retry, about 3 s).
    deadline = time.monotonic() + 20
    while "storage cannot be reached" not in perennial.log_tail(400) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(8)
    assert perennial.log_tail(400).count("storage cannot be reached") == 1
