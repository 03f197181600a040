"""Bad API requests get a 4xx problem+json that names the field — never a 500; storage that cannot be
reached is a 503 that says what to do."""

from __future__ import annotations

import time

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
    colour = _problem(http.post("/api/models/fraud/retrain", json={"colour": "red"}), 400)
    assert colour["field"] == "colour"
    assert "'blobs'" in str(colour["detail"]), "the fields a retrain request may carry, blobs included"
    # A data selection is checked before a run starts: unsafe, another model's, or not there.
    for blobs, says in (
        (["landing/fraud/ok.csv", "../etc/passwd"], "'..' segment"),
        (["landing/other/x.csv"], "unknown model"),
        (["landing/fraud/never-landed.csv"], "there is no blob landing/fraud/never-landed.csv"),
    ):
        response = http.post("/api/models/fraud/retrain", json={"blobs": blobs})
        body = _problem(response, 400)
        assert body["field"] == f"blobs[{len(blobs) - 1}]", body
        assert says in str(body["detail"])
        assert str(body["detail"]).count("(") == 1, "the hint once, not twice"
    assert http.get("/api/models/fraud/runs").json()["runs"] == [], "no run was started for a refused request"
    assert _problem(http.get("/api/models/fraud/runs?limit=0"), 400)["field"] == "limit"
    assert _problem(http.get("/api/runs/nope-123"), 404)["field"] == "id"
    assert _problem(http.get("/api/runs/fraud-0000000000000000"), 404)
    assert _problem(http.post("/api/runs/fraud-0000000000000000/approve", json={}), 404)
    assert _problem(http.post("/api/runs/fraud-0000000000000000/abort"), 404)
    alert = {"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": {"alertId": "a"}}}
    assert _problem(http.post("/api/alerts/azure-monitor", json=alert), 400)["field"]
    # Without a key: 401, not a 500.
    assert httpx.get(f"{perennial.base_url}/api/models").status_code == 401
    assert httpx.get(f"{perennial.base_url}/api/health").status_code == 200


def test_approve_on_a_finished_run_is_a_409(perennial: PerennialHost) -> None:
    from shared.registry import Run

    perennial.registry.create_run(Run("fraud", "fraud-00000000000000aa", "manual", "test", "e1", status="promoted"))
    body = _problem(perennial.http.post("/api/runs/fraud-00000000000000aa/approve", json={"by": "me"}), 409)
    assert "awaiting_approval" in str(body["detail"])
    assert _problem(perennial.http.post("/api/runs/fraud-00000000000000aa/abort"), 409)


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
