"""Activities on their failure paths, run as the host runs them: real registry (Azurite), the local ML
platform running real job subprocesses, the outbox publisher.

- a finished run's outcome is never overwritten by a later failure report;
- a job that "completed" without its result is a failed attempt, not a crash of the run;
- the jobs of a run that has already ended are cancelled at their next poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest

from functions import activities, clients, orchestrators
from shared.platform import (
    ComputeSpec,
    DeploymentFailedError,
    DeploymentRef,
    DeploymentSpec,
    DeploymentState,
    JobSpec,
    NotFoundError,
    TransientPlatformError,
)
from shared.platform import Traffic as EndpointTraffic
from shared.registry import Candidate, Champion, Run
from shared.runtime import get_runtime
from shared.workflow import JobRequest, JobResult
from tests.fake_topic import CLOSED_TOPIC, fake_topic
from tests.unit.conftest import clear_caches
from tests.unit.test_rollout_orchestration import _drive

pytestmark = pytest.mark.azurite


@pytest.fixture(autouse=True)
def _runs_end_with_their_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """The module's tests share one Azurite: a run a test left pending or running would keep the next test's
    claim_run waiting (one run at a time per model), whatever order they run in."""
    if "activity" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("activity")  # set up first, so that its storage settings outlive this teardown
    yield
    registry = clients.registry()
    for run in registry.active_runs("fraud"):
        registry.update_run("fraud", run.run_id, lambda r: replace(r, status="failed", stage="done"))


def _run(run_id: str, status: str = "running") -> Run:
    run = Run("fraud", run_id, "manual", "test", f"{run_id}:event", status=status, stage="training")
    return clients.registry().create_run(run)


def _job(tmp_path: Path, run_id: str, script: str) -> JobRequest:
    """A training job of ``run_id`` running ``script`` (Python source) on the local platform."""
    code = tmp_path / f"code-{run_id}"
    code.mkdir()
    (code / "job.py").write_text(script)
    request = JobRequest(model="fraud", run_id=run_id, base_name=f"{run_id}-c0", kind="train")
    clients.platform().ensure_compute(ComputeSpec("local"))
    clients.platform().submit_job(
        JobSpec(name=request.job_name, experiment_name="fraud", compute="local", script="job.py", code=str(code))
    )
    return request


def _terminal(job_name: str) -> str:
    deadline = time.monotonic() + 60
    while (state := clients.platform().get_job(job_name)).phase in ("queued", "running"):
        assert time.monotonic() < deadline, f"{job_name} is still {state.status}"
        time.sleep(0.1)
    return state.phase


def test_a_later_failure_report_does_not_overwrite_a_finished_run(activity: Any) -> None:
    _run("fraud-00000000000000c1")
    finished = {"model": "fraud", "run_id": "fraud-00000000000000c1"}
    activity("finish_run", {**finished, "status": "promoted", "version": "3", "reasons": ["pr_auc +0.04"]})
    # What the coordinator sends when the run's orchestration then failed (say RunCompleted could not be sent).
    activity("finish_run", {**finished, "status": "failed", "error": "Event Grid unreachable", "reasons": ["x"]})
    run = clients.registry().require_run("fraud", "fraud-00000000000000c1")
    assert run.status == "promoted"
    assert run.decision == "promote"
    assert run.decision_reasons == ["pr_auc +0.04"]
    assert run.registered_version == "3"
    assert run.error == "Event Grid unreachable", "the later error is kept beside the outcome"


class _EveryRunAlive:
    """The timer's Durable client, for a tick that must not close anything: every instance is running."""

    async def get_status(self, instance: str) -> Any:
        from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

        return SimpleNamespace(runtime_status=OrchestrationRuntimeStatus.Running)


def test_an_event_grid_outage_does_not_fail_a_finished_run_and_its_event_goes_out_later(
    activity: Any, app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = "fraud-00000000000000a7"
    _run(run_id)
    monkeypatch.setenv("PERENNIAL_EVENTGRID_ENDPOINT", CLOSED_TOPIC)
    monkeypatch.setenv("PERENNIAL_EVENTGRID_KEY", "local-key")
    clear_caches()

    result = activity("finish_run", {"model": "fraud", "run_id": run_id, "status": "promoted", "version": "3"})

    assert result == {"run_id": run_id, "status": "promoted"}
    assert clients.registry().require_run("fraud", run_id).status == "promoted"
    assert _unsent_events(app_functions, "fraud") == 1  # what GET /api/models tells an operator
    with fake_topic() as topic:
        monkeypatch.setenv("PERENNIAL_EVENTGRID_ENDPOINT", topic.endpoint)
        clear_caches()
        # The housekeeping timer's tick, under the durable-client middleware (which builds a client from JSON).
        tick = app_functions["retire_deployments"].get_user_function().__wrapped__
        asyncio.run(tick(None, client=_EveryRunAlive()))
        [event] = topic.received
    assert (event["id"], event["eventType"]) == (f"{run_id}:completed", "Perennial.RunCompleted")
    assert event["data"]["status"] == "promoted"
    assert _unsent_events(app_functions, "fraud") == 0


def _unsent_events(app_functions: dict[str, Any], model: str) -> int:
    listing = app_functions["list_models"].get_user_function().__wrapped__  # under the durable-client middleware
    response = asyncio.run(
        listing(func.HttpRequest(method="GET", url="/api/models", body=b""), client=_EveryRunAlive())
    )
    assert response.status_code == 200, response.get_body()
    [listed] = [m for m in json.loads(response.get_body())["models"] if m["model"] == model]
    return int(listed["unsent_events"])


def test_a_run_that_ships_nothing_ends_with_a_warning_an_alert_can_find(
    activity: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """infra/ alerts on these lines in Application Insights: a failed or rolled-back run must be a warning."""
    _run("fraud-00000000000000c8")
    _run("fraud-00000000000000c9")
    payload = {"model": "fraud", "status": "failed", "reasons": ["every candidate failed"]}
    with caplog.at_level(logging.INFO, logger="perennial"):
        activity("finish_run", {**payload, "run_id": "fraud-00000000000000c8"})
        activity("finish_run", {**payload, "run_id": "fraud-00000000000000c9", "status": "promoted", "version": "4"})
    ended = {r.getMessage(): r.levelno for r in caplog.records if " ended " in r.getMessage()}
    assert ended == {
        "run fraud-00000000000000c8 of fraud ended failed: every candidate failed": logging.WARNING,
        "run fraud-00000000000000c9 of fraud ended promoted: every candidate failed": logging.INFO,
    }


class _HungTaskHub:
    """A Durable client whose status reads never answer (a task hub that hangs)."""

    async def get_status(self, instance: str) -> Any:
        await asyncio.sleep(3600)


def test_the_model_listing_does_not_wait_on_a_hung_task_hub(
    activity: Any, app_functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions import coordination

    monkeypatch.setattr(coordination, "STATUS_TIMEOUT_SECONDS", 0.2)
    listing = app_functions["list_models"].get_user_function().__wrapped__
    started = time.monotonic()
    response = asyncio.run(listing(func.HttpRequest(method="GET", url="/api/models", body=b""), client=_HungTaskHub()))
    assert time.monotonic() - started < 5
    assert response.status_code == 200, response.get_body()
    [fraud] = json.loads(response.get_body())["models"]
    assert fraud["waiting"] is None, "what the coordinator waits on is left out, not the listing"


def test_a_job_that_completed_without_its_metrics_is_a_failed_attempt(activity: Any, tmp_path: Path) -> None:
    _run("fraud-00000000000000c2")
    job = _job(tmp_path, "fraud-00000000000000c2", "print('done, but wrote nothing')\n")
    assert _terminal(job.job_name) == "completed"
    status = activity("job_status", job.dump())
    assert status["phase"] == "failed", "retried per spec, not an exception that ends the run"
    assert "without a readable metrics.json" in status["error"]


def test_a_failed_candidate_keeps_why_its_job_failed(activity: Any, tmp_path: Path) -> None:
    """`perennial run` shows a failed candidate's error (its log's last lines) even when a sibling completed."""
    run = _run("fraud-00000000000000c5")
    script = "import sys\nprint('step 120 loss nan')\nprint('DivergedError: lower --lr')\nsys.exit(1)\n"
    job = _job(tmp_path, run.run_id, script)
    assert _terminal(job.job_name) == "failed"
    status = activity("job_status", job.dump())
    assert status["phase"] == "failed"
    clients.registry().save_candidates([Candidate("fraud", run.run_id, "c0"), Candidate("fraud", run.run_id, "c1")])
    failed = JobResult(
        base_name=job.base_name, job_name=job.job_name, outcome="failed", attempts=1,
        error=f"{job.job_name}: failed ({status['error']})",
    )  # fmt: skip
    completed = JobResult(
        base_name=f"{run.run_id}-c1", job_name=f"{run.run_id}-c1-a0", outcome="completed", attempts=1,
        metrics={"pr_auc": 0.4},
    )  # fmt: skip
    activity(
        "record_candidates", {"model": "fraud", "run_id": run.run_id, "results": [failed.dump(), completed.dump()]}
    )
    by_id = {c.candidate_id: c for c in clients.registry().candidates("fraud", run.run_id)}
    assert by_id["c0"].status == "failed"
    assert "DivergedError: lower --lr" in (by_id["c0"].error or "")
    assert (by_id["c1"].status, by_id["c1"].error, by_id["c1"].metrics) == ("completed", None, {"pr_auc": 0.4})


def test_the_jobs_of_a_run_that_has_ended_are_cancelled_at_their_next_poll(activity: Any, tmp_path: Path) -> None:
    run = _run("fraud-00000000000000c3")
    job = _job(tmp_path, run.run_id, "import time\ntime.sleep(120)\n")
    assert activity("job_status", job.dump())["phase"] in ("queued", "running")
    clients.registry().update_run("fraud", run.run_id, lambda r: replace(r, status="failed"))
    status = activity("job_status", job.dump())
    assert status["phase"] == "canceled"
    assert "the run has ended (failed)" in status["error"]
    assert _terminal(job.job_name) == "canceled", "the training process was stopped, not left running"


def test_a_retried_step_is_recorded_once(activity: Any) -> None:
    from functions.activities import _record_step

    run = _run("fraud-00000000000000c4")
    payload = {"model": "fraud", "run_id": run.run_id}
    evidence = {"p_value": 0.5, "reasons": ("within the gates",)}  # a verdict's tuples come back as lists
    for _ in range(2):  # an activity that failed after recording, and its retry
        _record_step(payload, "traffic-10", {"fraud-v1": 90, "fraud-v2": 10}, {}, "pass", evidence)
    _record_step(payload, "traffic-50", {"fraud-v1": 50, "fraud-v2": 50}, {}, "pass", evidence)
    steps = clients.registry().rollout_steps("fraud", run.run_id)
    assert [(s.index, s.step) for s in steps] == [(0, "traffic-10"), (1, "traffic-50")]


def test_a_run_waiting_for_approval_records_when_the_wait_ends(activity: Any) -> None:
    """GET /api/runs/{id} and `perennial run` say until when a person may approve (rollout.approval.timeout_hours)."""
    run = _run("fraud-00000000000000c5")
    before = datetime.now(UTC)
    payload = {"model": "fraud", "run_id": run.run_id, "stage": "awaiting_approval", "details": {"version": "3"}}
    assert activity("record_stage", payload) == {"abort": False}
    waiting = clients.registry().require_run("fraud", run.run_id)
    assert waiting.stage == "awaiting_approval"
    recorded = waiting.details["awaiting_approval"]
    assert recorded["version"] == "3"
    hours = get_runtime().spec("fraud").rollout.approval.timeout_hours
    until = datetime.fromisoformat(recorded["until"])
    assert before + timedelta(hours=hours) <= until <= datetime.now(UTC) + timedelta(hours=hours)
    activity("record_stage", {**payload, "stage": "rolling_out"})
    assert "until" not in clients.registry().require_run("fraud", run.run_id).details["rolling_out"]


def _accepted(run_id: str, reason: str) -> dict[str, Any]:
    """A retrain the API accepted: its pending record, carrying the work item it sent the coordinator."""
    trigger = {"kind": "manual", "reason": reason, "source_event_id": run_id, "details": {}}
    work = {"kind": "retrain", "run_id": run_id, "trigger": trigger}
    run = Run("fraud", run_id, "manual", reason, run_id, status="pending", stage="queued", details={"work": work})
    clients.registry().create_run(run)
    return work


def _requests(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [w for w in found if w["kind"] != "blobs"]


def test_accepted_requests_whose_event_was_lost_are_found_oldest_first(activity: Any) -> None:
    first = _accepted("fraud-00000000000000d1", "weekly refresh")
    second = _accepted("fraud-00000000000000d2", "drift")
    _run("fraud-00000000000000d3")  # running: not waiting to be claimed
    found = _requests(activity("pending_work", {"model": "fraud"}))
    assert [w for w in found if w["run_id"] in (first["run_id"], second["run_id"])] == [first, second]
    assert all(w["run_id"] != "fraud-00000000000000d3" for w in found)


def test_a_request_merged_into_another_run_is_answered_not_left_pending(activity: Any) -> None:
    first = _accepted("fraud-00000000000000e1", "weekly refresh")
    second = _accepted("fraud-00000000000000e2", "drift alert")
    claimed = activity("claim_run", {"model": "fraud", "blobs": [], "requests": [first, second]})
    assert claimed["run_id"] == "fraud-00000000000000e1"
    merged = clients.registry().require_run("fraud", "fraud-00000000000000e2")
    assert merged.status == "merged"
    assert merged.decision_reasons == ["merged into run fraud-00000000000000e1, which trains for it"]
    left = {w["run_id"] for w in _requests(activity("pending_work", {"model": "fraud"}))}
    assert not left & {first["run_id"], second["run_id"]}, "nothing left to claim, and no 409 for ever"


def _alert(model: str, run_id: str, kind: str = "drift_alert", age: timedelta = timedelta(0)) -> dict[str, Any]:
    """A monitor's alert the webhook accepted (its pending record, created ``age`` ago) and its work item."""
    trigger = {"kind": kind, "reason": f"{kind} {run_id}", "source_event_id": run_id, "details": {}}
    work = {"kind": "retrain", "run_id": run_id, "trigger": trigger}
    created = datetime.now(UTC) - age
    run = Run(model, run_id, kind, "alert", run_id, status="pending", stage="queued", created_at=created)
    clients.registry().create_run(replace(run, details={"work": work}))
    return work


def _ran(model: str, run_id: str, status: str, age: timedelta) -> None:
    created = datetime.now(UTC) - age
    clients.registry().create_run(Run(model, run_id, "manual", "x", run_id, status=status, created_at=created))


def test_two_alerts_that_arrived_together_retrain_once(activity: Any) -> None:
    """The second alert passed the webhook's cool-down check with the first (both arrived before any run),
    then waited behind the first one's run: when its turn comes, that run has answered it."""
    first = _alert("drift-twice", "drift-twice-00000000a1")
    second = _alert("drift-twice", "drift-twice-00000000a2", kind="monitor_alert")
    claimed = activity("claim_run", {"model": "drift-twice", "blobs": [], "requests": [first]})
    assert claimed["run_id"] == first["run_id"]
    clients.registry().update_run("drift-twice", first["run_id"], lambda r: replace(r, status="promoted", stage="done"))

    assert activity("claim_run", {"model": "drift-twice", "blobs": [], "requests": [second]}) is None
    suppressed = clients.registry().require_run("drift-twice", second["run_id"])
    assert suppressed.status == "suppressed"
    assert suppressed.stage == "done"
    [reason] = suppressed.decision_reasons
    assert reason.startswith("suppressed when its turn came: run drift-twice-00000000a1 (promoted) was created at")
    assert "cooling down until" in reason


def test_a_queued_alert_skips_only_itself_and_requests_that_never_ran_do_not_block(activity: Any) -> None:
    # Requests that never ran (merged, suppressed) do not start a cool-down; a manual request is never suppressed.
    _ran("queued-mix", "queued-mix-0000000b0", "merged", timedelta(hours=1))
    _ran("queued-mix", "queued-mix-0000000b9", "suppressed", timedelta(hours=1))
    alerts = [_alert("queued-mix", "queued-mix-0000000b1"), _alert("queued-mix", "queued-mix-0000000b2")]
    claimed = activity("claim_run", {"model": "queued-mix", "blobs": [], "requests": alerts})
    assert claimed["run_id"] == "queued-mix-0000000b1", "two alerts claimed together make one run"
    assert clients.registry().require_run("queued-mix", "queued-mix-0000000b2").status == "merged"

    clients.registry().update_run("queued-mix", claimed["run_id"], lambda r: replace(r, status="failed", stage="done"))
    late = _alert("queued-mix", "queued-mix-0000000b3")
    person = _accepted_for("queued-mix", "queued-mix-0000000b4")
    claimed = activity("claim_run", {"model": "queued-mix", "blobs": [], "requests": [late, person]})
    assert claimed["run_id"] == person["run_id"], "the alert is answered by the run before; the person's request runs"
    assert clients.registry().require_run("queued-mix", late["run_id"]).status == "suppressed"


def test_a_queued_alert_after_the_cool_down_starts_its_run(activity: Any) -> None:
    _ran("cooled", "cooled-00000000000c0", "not_promoted", timedelta(hours=25))
    alert = _alert("cooled", "cooled-00000000000c1", age=timedelta(hours=25))
    claimed = activity("claim_run", {"model": "cooled", "blobs": [], "requests": [alert]})
    assert claimed is not None
    assert claimed["run_id"] == alert["run_id"]
    assert clients.registry().require_run("cooled", alert["run_id"]).status == "running"


def _accepted_for(model: str, run_id: str) -> dict[str, Any]:
    trigger = {"kind": "manual", "reason": "a person asked", "source_event_id": run_id, "details": {}}
    work = {"kind": "retrain", "run_id": run_id, "trigger": trigger}
    run = Run(
        model, run_id, "manual", "a person asked", run_id, status="pending", stage="queued", details={"work": work}
    )
    clients.registry().create_run(run)
    return work


def test_landing_blobs_no_run_has_claimed_are_pending_work(activity: Any) -> None:
    landed = clients.store().upload_landing("fraud", "lost-event.csv", b"id,amount\n1,2.0\n")
    clients.store().upload_landing("fraud", "still-being-written.csv", b"")  # as ADLS lists it before the flush
    blobs = [w for w in activity("pending_work", {"model": "fraud"}) if w["kind"] == "blobs"]
    assert [b["name"] for b in blobs[0]["blobs"]] == ["fraud/lost-event.csv"]
    claimed = activity("claim_run", {"model": "fraud", **blobs[0], "requests": []})
    assert claimed is not None
    assert [b["name"] for b in claimed["blobs"]] == ["fraud/lost-event.csv"]
    assert all(w["kind"] != "blobs" for w in activity("pending_work", {"model": "fraud"})), landed.etag


def test_a_pending_record_without_a_usable_work_item_is_left_alone(activity: Any) -> None:
    broken = Run("fraud", "fraud-00000000000000f9", "manual", "x", "e", status="pending", details={"work": {"kind": 3}})
    clients.registry().create_run(broken)
    found = activity("pending_work", {"model": "fraud"})
    assert all(w.get("run_id") != broken.run_id for w in found), "a malformed item would fail every claim"


def test_a_request_whose_run_ended_does_not_lend_its_id_to_a_claim(activity: Any) -> None:
    done = _run("fraud-00000000000000fa", status="promoted")
    stale = {
        "kind": "retrain",
        "run_id": done.run_id,
        "trigger": {"kind": "manual", "reason": "old", "source_event_id": "e"},
    }
    fresh = _accepted("fraud-00000000000000fb", "still wanted")
    claimed = activity("claim_run", {"model": "fraud", "blobs": [], "requests": [stale, fresh]})
    assert claimed is not None
    assert claimed["run_id"] == fresh["run_id"]


# --------------------------------------------------------------------------- finishing a rollout


def _champion(champion: Champion) -> None:
    """Point the registry at ``champion`` whatever this module's earlier tests left there."""
    current = clients.registry().champion(champion.model)
    clients.registry().set_champion(replace(champion, etag=current.etag if current else None))


class _TagFailsOnce:
    """The platform side of a promotion whose champion tag fails once (a 503 past the SDK's retries). There is
    no endpoint to tidy, which the promotion leaves to the housekeeping timer."""

    def __init__(self) -> None:
        self.tagged: list[tuple[str, str]] = []
        self.failures = 1

    def set_champion(self, name: str, version: str) -> None:
        if self.failures:
            self.failures -= 1
            raise TransientPlatformError(f"tag model {name}:{version}: 503", "try again later")
        self.tagged.append((name, version))

    def list_deployments(self, endpoint: str) -> list[Any]:
        raise NotFoundError("endpoint", endpoint)


@pytest.mark.parametrize("finisher", ["rollout_finish", "rollout_abandon"])
def test_a_promotion_that_failed_half_way_is_finished_by_its_retry_or_its_abandon(
    activity: Any, monkeypatch: pytest.MonkeyPatch, finisher: str
) -> None:
    """After the last gate passed, a failure between the registry write and ModelPromoted must neither throw the
    new champion away nor lose its event, and the event names the version it replaced (not itself)."""
    run = _run(f"fraud-00000000000000{'g1' if finisher == 'rollout_finish' else 'g2'}")
    registry = clients.registry()
    _champion(Champion("fraud", "1", "fraud-earlier", deployment="fraud-v1"))
    platform = _TagFailsOnce()
    monkeypatch.setattr(activities, "_platform", lambda: platform)
    payload = {
        "model": "fraud",
        "run_id": run.run_id,
        "version": "2",
        "endpoint": "fraud-ep",
        "champion": "fraud-v1",
        "challenger": "fraud-v2",
        "outcome": "completed",
        "reasons": ["every gate passed"],
        "reason": "the rollout failed unexpectedly: 503",
    }
    with fake_topic() as topic:
        monkeypatch.setenv("PERENNIAL_EVENTGRID_ENDPOINT", topic.endpoint)
        monkeypatch.setenv("PERENNIAL_EVENTGRID_KEY", "local-key")
        clear_caches()
        with pytest.raises(TransientPlatformError):
            activity("rollout_finish", payload)
        answer = activity(finisher, payload)
        promoted = [e for e in topic.received if e["eventType"] == "Perennial.ModelPromoted"]
    champion = registry.champion("fraud")
    assert champion is not None
    assert (champion.version, champion.previous_version) == ("2", "1")
    assert platform.tagged == [("fraud", "2")]
    assert [(e["id"], e["data"]["version"], e["data"]["previous_version"]) for e in promoted] == [
        (f"{run.run_id}:promoted", "2", "1")
    ]
    if finisher == "rollout_abandon":
        assert answer["outcome"] == "completed"


class _PlatformDown:
    def get_traffic(self, endpoint: str) -> Any:
        raise TransientPlatformError(f"get endpoint {endpoint}: 503", "try again later")


def test_a_rollback_whose_last_step_gave_up_already_points_the_registry_at_the_restored_version(
    activity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Traffic already serves the restored version; if the platform stays down past the retries, housekeeping
    repairs towards the registry's champion, so that must be the restored version, not the one rolled away."""
    run = _run("fraud-00000000000000g3")
    _champion(Champion("fraud", "2", "fraud-earlier", deployment="fraud-v2", previous_version="1"))
    monkeypatch.setattr(activities, "_platform", lambda: _PlatformDown())
    payload = {"model": "fraud", "run_id": run.run_id, "endpoint": "fraud-ep", "challenger": "fraud-v1"}
    with pytest.raises(TransientPlatformError):
        activity(
            "rollback_restore", {**payload, "champion": "fraud-v2", "version": "1", "from_version": "2", "steps": 2}
        )
    champion = clients.registry().champion("fraud")
    assert champion is not None
    assert (champion.version, champion.deployment, champion.previous_version) == ("1", "fraud-v1", "2")


class _EndpointOnly:
    """A platform with an empty endpoint that records the deployments it is asked to make."""

    def __init__(self) -> None:
        self.deployed: list[str] = []

    def ensure_endpoint(self, spec: Any) -> None:
        return None

    def list_deployments(self, endpoint: str) -> list[Any]:
        return []

    def create_or_update_deployment(self, spec: Any) -> None:
        self.deployed.append(spec.name)


def test_a_rollout_aborted_before_it_deployed_deploys_nothing(activity: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run("fraud-00000000000000g4")
    clients.registry().update_run("fraud", run.run_id, lambda r: r.request_abort("dana", "wrong export", r.updated_at))
    platform = _EndpointOnly()
    monkeypatch.setattr(activities, "_platform", lambda: platform)
    plan = activity("rollout_prepare", {"model": "fraud", "run_id": run.run_id, "version": "2"})
    assert plan["error"] == "aborted on request by dana (wrong export): fraud-v2 was not deployed"
    assert platform.deployed == []
    [step] = clients.registry().rollout_steps("fraud", run.run_id)
    assert (step.step, step.verdict) == ("deploy", "aborted")


class _Deployments:
    """An endpoint's deployments, made at once (as the local platform makes them)."""

    def __init__(self, *existing: DeploymentState) -> None:
        self.existing = {d.name: d for d in existing}
        self.created: list[str] = []

    def list_deployments(self, endpoint: str) -> list[DeploymentState]:
        return list(self.existing.values())

    def get_deployment(self, ref: DeploymentRef) -> DeploymentState:
        return self.existing[ref.name]

    def deployment_logs(self, request: Any) -> str:
        return "loading model\nValueError: the weights do not match the config\n"

    def create_or_update_deployment(self, spec: DeploymentSpec) -> DeploymentState:
        made = DeploymentState(
            spec.endpoint, spec.name, spec.model_name, spec.model_version, spec.instance_type, spec.instance_count,
            "Succeeded", tags=dict(spec.tags),
        )  # fmt: skip
        self.existing[spec.name] = made
        self.created.append(spec.name)
        return made


def _deployment(name: str, version: str, run_id: str) -> DeploymentState:
    instances = get_runtime().spec("fraud").rollout.instance_count
    return DeploymentState("fraud-ep", name, "fraud", version, "Standard_DS3_v2", instances, "Succeeded",
                           tags={"perennial_run": run_id})  # fmt: skip


@pytest.mark.parametrize("retired", [True, False], ids=["recreated", "kept"])
def test_a_rollback_knows_a_deployment_it_recreated_on_every_attempt(
    activity: Any, monkeypatch: pytest.MonkeyPatch, retired: bool
) -> None:
    """A recreated previous version that fails its smoke test is deleted again; a kept one stays. A retry of
    rollback_prepare (which finds the deployment its first attempt made) must decide the same."""
    run = _run("fraud-00000000000000g5" if retired else "fraud-00000000000000g6")
    _champion(Champion("fraud", "2", "fraud-earlier", deployment="fraud-v2", previous_version="1"))
    kept = () if retired else (_deployment("fraud-v1", "1", "fraud-earlier"),)
    platform = _Deployments(_deployment("fraud-v2", "2", "fraud-earlier"), *kept)
    monkeypatch.setattr(activities, "_platform", lambda: platform)
    request = {"model": "fraud", "run_id": run.run_id, "blobs": [],
               "trigger": {"kind": "rollback", "reason": "r", "source_event_id": run.run_id}}  # fmt: skip
    first, retry = activity("rollback_prepare", request), activity("rollback_prepare", request)
    assert first["challenger"] == retry["challenger"] == "fraud-v1"
    assert first["keep_on_failure"] is retry["keep_on_failure"] is not retired
    assert platform.created == (["fraud-v1", "fraud-v1"] if retired else [])


def test_a_deployment_is_recorded_when_its_provisioning_ends(activity: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run("fraud-00000000000000g7")
    creating = replace(_deployment("fraud-v2", "2", run.run_id), provisioning_state="Creating")
    platform = _Deployments(creating)
    monkeypatch.setattr(activities, "_platform", lambda: platform)
    payload = {"model": "fraud", "run_id": run.run_id, "endpoint": "fraud-ep", "challenger": "fraud-v2"}
    assert activity("deployment_provisioned", payload) == {"provisioning": True, "state": "Creating"}
    assert clients.registry().rollout_steps("fraud", run.run_id) == []
    platform.existing["fraud-v2"] = replace(creating, provisioning_state="Failed", error="the image did not start")
    answer = activity("deployment_provisioned", payload)
    assert answer["provisioning"] is False
    assert answer["error"].startswith("deployment fraud-v2 ended Failed (the image did not start); its log ends: ")
    assert "loading model | ValueError: the weights do not match the config" in answer["error"]
    assert answer["error"].endswith("(fix the model or score.py, then roll the version out again)")
    [step] = clients.registry().rollout_steps("fraud", run.run_id)
    assert (step.step, step.verdict) == ("deploy", "fail")


def test_an_abort_stops_the_wait_for_a_deployment_still_provisioning(
    activity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run("fraud-00000000000000g8")
    platform = _Deployments(replace(_deployment("fraud-v2", "2", run.run_id), provisioning_state="Creating"))
    monkeypatch.setattr(activities, "_platform", lambda: platform)
    clients.registry().update_run("fraud", run.run_id, lambda r: r.request_abort("dana", None, r.updated_at))
    payload = {"model": "fraud", "run_id": run.run_id, "endpoint": "fraud-ep", "challenger": "fraud-v2"}
    assert activity("deployment_provisioned", payload) == {
        "provisioning": False,
        "error": "aborted on request by dana: fraud-v2 was removed before it took traffic",
    }


def test_a_previous_version_whose_deployment_is_being_deleted_is_not_kept(
    activity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Smoke-testing and moving traffic onto a deployment Azure is deleting would fail half-way."""
    run = _run("fraud-00000000000000g9")
    _champion(Champion("fraud", "2", "fraud-earlier", deployment="fraud-v2", previous_version="1"))
    going = replace(_deployment("fraud-v1", "1", "fraud-earlier"), provisioning_state="Deleting")
    platform = _Deployments(_deployment("fraud-v2", "2", "fraud-earlier"), going)
    monkeypatch.setattr(activities, "_platform", lambda: platform)
    request = {"model": "fraud", "run_id": run.run_id, "blobs": [],
               "trigger": {"kind": "rollback", "reason": "r", "source_event_id": run.run_id}}  # fmt: skip
    plan = activity("rollback_prepare", request)
    assert plan["keep_on_failure"] is False
    assert platform.created == ["fraud-v1"]


class _FailsProvisioning(_Deployments):
    """Azure's answer to a deployment that ends Failed: the PUT leaves it there, and the adapter raises."""

    def create_or_update_deployment(self, spec: DeploymentSpec) -> DeploymentState:
        made = super().create_or_update_deployment(spec)
        self.existing[spec.name] = replace(made, provisioning_state="Failed")
        raise DeploymentFailedError(f"deployment {spec.name!r} ended Failed", "read its logs")

    def get_traffic(self, endpoint: str) -> EndpointTraffic:
        return EndpointTraffic(live={"fraud-v2": 100}, mirror={})

    def delete_deployment(self, ref: DeploymentRef) -> None:
        del self.existing[ref.name]


def test_a_rollback_whose_recreated_deployment_fails_deletes_it_again(
    activity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left there, no run would own it and housekeeping would keep it as the previous champion's deployment."""
    run = _run("fraud-00000000000000a8")
    _champion(Champion("fraud", "2", "fraud-earlier", deployment="fraud-v2", previous_version="1"))
    platform = _FailsProvisioning(_deployment("fraud-v2", "2", "fraud-earlier"))  # fraud-v1 was retired
    monkeypatch.setattr(activities, "_platform", lambda: platform)
    request = {"model": "fraud", "run_id": run.run_id, "blobs": [],
               "trigger": {"kind": "rollback", "reason": "r", "source_event_id": run.run_id}}  # fmt: skip
    plan = activity("rollback_prepare", request)
    assert plan["error"].startswith("the previous version 1 could not be deployed again")
    _, calls = _drive(orchestrators.model_rollback, request, lambda task: plan if task[1] == "rollback_prepare" else {})
    assert [c[1] for c in calls] == ["record_stage", "rollback_prepare", "rollback_discard", "finish_run"]
    activity("rollback_discard", {"model": "fraud", "run_id": run.run_id, **plan})
    assert sorted(platform.existing) == ["fraud-v2"]
    # Still provisioning (or Failed) when the rollback's wait for it ends: the same.
    waited = {**plan, "provisioning": True, "champion": "fraud-v2", "version": "1"}
    del waited["error"]
    answers = {"rollback_prepare": waited, "deployment_provisioned": {"provisioning": False, "error": "ended Failed"}}
    _, calls = _drive(
        orchestrators.model_rollback,
        request,
        lambda task: answers.get(task[1], {}) if isinstance(task, tuple) else None,
    )
    assert [c[1] for c in calls if c[0] == "activity"][-2:] == ["rollback_discard", "finish_run"]
    # One an earlier run made is never deleted by it.
    platform.existing["fraud-v1"] = _deployment("fraud-v1", "1", "fraud-earlier")
    activity("rollback_discard", {"model": "fraud", "run_id": run.run_id, **plan})
    assert "fraud-v1" in platform.existing


def _scored(champion: bool) -> dict[str, Any]:
    metrics = {
        "accuracy": 0.97,
        "precision": 0.8,
        "recall": 0.7,
        "f1": 0.75,
        "roc_auc": 0.95,
        "pr_auc": 0.6,
        "ece": 0.02,
    }
    difference = {"metric": "pr_auc", "estimate": 0.0, "ci_low": -0.01, "ci_high": 0.01, "confidence": 0.95,
                  "p_value": 0.5, "bootstrap_samples": 1000}  # fmt: skip
    return {
        "primary_metric": "pr_auc",
        "n_holdout": 1000,
        "challenger": metrics,
        "champion": metrics if champion else None,
        "difference": difference if champion else None,
        "mcnemar": None,
    }


@pytest.mark.parametrize("champion", [True, False])
def test_a_decision_records_the_champion_it_compared_with(activity: Any, champion: bool) -> None:
    """A version's lineage names the champion it beat (None: a first model, judged on its floors)."""
    run_id = f"fraud-00000000000000c{int(champion)}"
    _run(run_id)
    _champion(Champion("fraud", "7", "fraud-earlier", deployment="fraud-v7"))
    evaluation = {"base_name": f"{run_id}-eval", "job_name": f"{run_id}-eval-a0", "outcome": "completed",
                  "attempts": 1, "metrics": _scored(champion)}  # fmt: skip
    best = {"base_name": f"{run_id}-c0", "job_name": f"{run_id}-c0-a0", "outcome": "completed", "attempts": 1}
    activity("decide_promotion", {"model": "fraud", "run_id": run_id, "evaluation": evaluation, "best": best})
    run = clients.registry().require_run("fraud", run_id)
    assert run.details["compared_with"] == ("7" if champion else None)


def test_no_second_run_starts_while_one_of_the_model_runs(activity: Any) -> None:
    """A coordinator that ended while its run went on (terminated by an operator, failed on a bug) is started
    again by the next blob or by housekeeping: its claim must not start a second run, and a second rollout on the
    same endpoint, beside the first."""
    rolling = _run("fraud-00000000000000b9")
    clients.store().upload_landing("fraud", "while-rolling-out.csv", b"id,amount\n1,2.0\n")
    [work] = [w for w in activity("pending_work", {"model": "fraud"}) if w["kind"] == "blobs"]
    assert activity("claim_run", {"model": "fraud", **work, "requests": []}) == {"busy": rolling.run_id}
    assert [r.run_id for r in clients.registry().active_runs("fraud")] == [rolling.run_id]
    still = [w for w in activity("pending_work", {"model": "fraud"}) if w["kind"] == "blobs"]
    assert still == [work], "nothing was claimed: the blobs wait for the next try"
    clients.registry().update_run("fraud", rolling.run_id, lambda r: replace(r, status="promoted", stage="done"))
    started = activity("claim_run", {"model": "fraud", **work, "requests": []})
    assert [b["name"] for b in started["blobs"]] == ["fraud/while-rolling-out.csv"]
    again = activity("claim_run", {"model": "fraud", **work, "requests": []})  # the activity retried
    assert again["run_id"] == started["run_id"], "its own run does not make it wait"
