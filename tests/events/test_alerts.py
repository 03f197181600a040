"""What an alert does: a monitor's alert waits for the model's runs as the schedule does (cool-down, run in
progress), and the alert finds its model however Azure Monitor cases the resource ids."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from functions import clients
from shared.events import KnownModels, Trigger, decide_alert, parse_event, parse_http
from shared.registry import Run, run_id_for
from shared.runtime import get_runtime
from shared.spec import TriggerSpec
from tests.events import samples

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
COOLDOWN = TriggerSpec().cooldown  # the spec's default, 24 hours
KNOWN = KnownModels(frozenset({"fraud", "churn"}), {"fraud-ep": "fraud"})


def _run(run_id: str, status: str, age: timedelta, now: datetime = NOW) -> Run:
    return Run("fraud", run_id, "blob_created", "data landed", "e-" + run_id, status=status, created_at=now - age)


def _drift(event_id: str = "drift-day-2", run: str = "monitor_run_2") -> dict[str, Any]:
    event = copy.deepcopy(samples.DRIFT)
    event["id"] = event_id
    event["data"]["RunId"] = run
    return event


def _alert(condition: str = "Fired", alert_id: str = "-eval-7") -> dict[str, Any]:
    alert = copy.deepcopy(samples.MONITOR_ALERT)
    alert["data"]["essentials"]["alertId"] += alert_id  # a stateless log alert: a new alertId each evaluation
    alert["data"]["essentials"]["monitorCondition"] = condition
    return alert


def _own_run_id(trigger: Trigger) -> str:
    return run_id_for(trigger.model, trigger.dedupe_key)


# --------------------------------------------------------------------------- the decision (pure)


@pytest.mark.parametrize(
    "trigger", [parse_event(_drift(), KNOWN), parse_http(_alert(), KNOWN)], ids=["drift", "monitor"]
)
def test_a_monitors_alert_while_a_run_is_in_progress_is_suppressed_with_the_reason(trigger: Trigger) -> None:
    runs = [_run("fraud-busy", "running", timedelta(days=3))]
    decision = decide_alert(trigger, _own_run_id(trigger), runs, NOW, COOLDOWN)
    assert decision.action == "suppressed"
    assert "run fraud-busy is running" in decision.reason


@pytest.mark.parametrize(
    "trigger", [parse_event(_drift(), KNOWN), parse_http(_alert(), KNOWN)], ids=["drift", "monitor"]
)
def test_a_monitors_alert_within_the_schedules_cooldown_is_suppressed(trigger: Trigger) -> None:
    cooldown = COOLDOWN
    recent = [_run("fraud-done", "not_promoted", cooldown - timedelta(hours=1))]
    decision = decide_alert(trigger, _own_run_id(trigger), recent, NOW, COOLDOWN)
    assert decision.action == "suppressed"
    assert "run fraud-done (not_promoted)" in decision.reason
    assert "cooling down until" in decision.reason

    old = [_run("fraud-done", "not_promoted", cooldown + timedelta(hours=1))]
    assert decide_alert(trigger, _own_run_id(trigger), old, NOW, COOLDOWN).action == "retrain"
    assert decide_alert(trigger, _own_run_id(trigger), [], NOW, COOLDOWN).action == "retrain", "a model's first run"
    # The window is the caller's to choose; none at all leaves only the run-in-progress rule.
    assert decide_alert(trigger, _own_run_id(trigger), recent, NOW, timedelta(0)).action == "retrain"


@pytest.mark.parametrize(
    ("status", "details"),
    [("suppressed", {}), ("merged", {"merged_into": "fraud-done"}), ("aborted", {"never_started": True})],
)
def test_a_request_that_never_ran_does_not_restart_the_cooldown(status: str, details: dict[str, Any]) -> None:
    # Suppressed when its turn came, merged into another run, aborted while queued: the next alert is judged
    # against the runs that did run.
    trigger = parse_event(_drift(), KNOWN)
    cooldown = COOLDOWN
    skipped = replace(_run("fraud-skipped", status, timedelta(hours=1)), details=details)
    runs = [skipped, _run("fraud-done", "promoted", cooldown + timedelta(hours=1))]
    assert decide_alert(trigger, _own_run_id(trigger), runs, NOW, COOLDOWN).action == "retrain"
    # An abort of a run that had started is a run: its cool-down holds.
    started = replace(_run("fraud-stopped", "aborted", timedelta(hours=1)), details={})
    assert decide_alert(trigger, _own_run_id(trigger), [started], NOW, COOLDOWN).action == "suppressed"


def test_a_bad_upload_does_not_silence_a_monitors_alert() -> None:
    """A run of landed data that ended without a valid new batch trained nothing and says nothing of the model: an
    accuracy alert after it retrains (on the data already there) instead of waiting out a day's cool-down."""
    trigger = parse_http(_alert(), KNOWN)
    quarantined = _run("fraud-bad-batch", "no_valid_data", timedelta(hours=1))
    assert decide_alert(trigger, _own_run_id(trigger), [quarantined], NOW, COOLDOWN).action == "retrain"
    # A request that found nothing to train on at all is still a run of the model: its cool-down holds, so a monitor
    # that keeps firing does not start one empty run after another.
    asked = replace(quarantined, trigger_kind="drift_alert")
    assert decide_alert(trigger, _own_run_id(trigger), [asked], NOW, COOLDOWN).action == "suppressed"


def test_a_perennial_drift_detected_event_is_a_monitors_alert_too() -> None:
    event = copy.deepcopy(samples.RETRAIN_REQUESTED)
    event["eventType"] = "Perennial.DriftDetected"
    event["data"] = {"model": "fraud", "method": "psi", "score": 0.4, "threshold": 0.2}
    trigger = parse_event(event, KNOWN)
    assert trigger.kind == "drift_alert"
    decision = decide_alert(trigger, _own_run_id(trigger), [_run("fraud-busy", "pending", timedelta(0))], NOW, COOLDOWN)
    assert decision.action == "suppressed"


def test_a_retrain_request_is_not_suppressed_the_schedule_or_a_person_asked() -> None:
    # The schedule waited for the model's runs before it published; anyone else publishing one asks on purpose.
    # (A person's POST /api/models/<m>/retrain is the API's, which has its own rule: a 409 while a run is on.)
    busy = [_run("fraud-busy", "running", timedelta(minutes=5))]
    requested = parse_event(samples.RETRAIN_REQUESTED, KNOWN)
    assert decide_alert(requested, _own_run_id(requested), busy, NOW, COOLDOWN).action == "retrain"


def test_a_redelivered_alert_whose_run_exists_goes_on_as_before() -> None:
    trigger = parse_event(_drift(), KNOWN)
    own = _run(_own_run_id(trigger), "pending", timedelta(minutes=1))
    decision = decide_alert(trigger, own.run_id, [own], NOW, COOLDOWN)
    assert decision.action == "retrain", "its own run must not block it: the work is sent again, idempotently"


def test_a_resolved_alert_is_recorded_only() -> None:
    trigger = parse_http(_alert("Resolved"), KNOWN)
    decision = decide_alert(trigger, _own_run_id(trigger), [], NOW, COOLDOWN)
    assert (decision.action, decision.reason) == ("recorded", trigger.reason)


# --------------------------------------------------------------------------- the functions (glue)


class FakeRegistry:
    def __init__(self, runs: list[Run]) -> None:
        self.existing = runs
        self.created: list[Run] = []

    def runs(self, model: str, limit: int | None = None) -> list[Run]:
        return [r for r in self.existing if r.model == model][:limit]

    def create_run(self, run: Run) -> Run:
        self.created.append(run)
        return run


class FakeDurableClient:
    def __init__(self) -> None:
        self.started: list[tuple[str, str, Any]] = []

    async def get_status(self, instance: str) -> None:
        return None

    async def start_new(self, name: str, instance: str, payload: Any) -> str:
        self.started.append((name, instance, payload))
        return instance


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The alert functions as the host calls them, with the real specs (models/) and a fake registry."""
    monkeypatch.setenv("PERENNIAL_MODELS_DIR", str(ROOT / "models"))
    get_runtime.cache_clear()
    state: dict[str, Any] = {"registry": FakeRegistry([]), "client": FakeDurableClient()}
    monkeypatch.setattr(clients, "registry", lambda: state["registry"])
    yield state
    get_runtime.cache_clear()


def _call(app_functions: dict[str, Any], name: str, arg: Any, client: Any) -> Any:
    # Under the durable-client middleware (which builds a real client from the host's JSON binding).
    return asyncio.run(app_functions[name].get_user_function().__wrapped__(arg, client=client))


def _event(raw: dict[str, Any]) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=raw["id"],
        data=raw["data"],
        topic=raw["topic"],
        subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=datetime.now(UTC),
        data_version="2",
    )


def test_the_webhook_acknowledges_a_suppressed_alert_queues_nothing_and_logs_why(
    app_functions: dict[str, Any], host: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    host["registry"] = FakeRegistry([_run("fraud-recent", "promoted", timedelta(hours=2), now)])
    request = func.HttpRequest("POST", "/api/alerts/azure-monitor", body=json.dumps(_alert()).encode())
    with caplog.at_level(logging.INFO, logger="perennial.alerts"):
        response = _call(app_functions, "azure_monitor_alert", request, host["client"])
    assert response.status_code == 202, "acknowledged: an action group retries a failure, not a 2xx"
    body = json.loads(response.get_body())
    assert (body["model"], body["action"], body["run_id"]) == ("fraud", "suppressed", None)
    assert "run fraud-recent (promoted)" in body["reason"]
    assert "cooling down until" in body["reason"]
    assert "POST /api/models/fraud/retrain" in body["hint"]
    assert host["registry"].created == [], "no pending run"
    assert host["client"].started == [], "no work for the coordinator"
    [record] = [r for r in caplog.records if r.name == "perennial.alerts"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "suppressed azureMonitorCommonAlertSchema for fraud (no run): run fraud-recent"
    )


def test_an_event_grid_drift_alert_during_a_run_is_acknowledged_and_queues_nothing(
    app_functions: dict[str, Any], host: dict[str, Any]
) -> None:
    host["registry"] = FakeRegistry([_run("fraud-busy", "running", timedelta(minutes=10), datetime.now(UTC))])
    assert _call(app_functions, "on_alert_event", _event(_drift()), host["client"]) is None, "acknowledged"
    assert host["registry"].created == []
    assert host["client"].started == []

    # The same alert once the model is idle and past the cool-down starts its run, as before.
    host["registry"] = FakeRegistry([_run("fraud-busy", "promoted", timedelta(days=2), datetime.now(UTC))])
    _call(app_functions, "on_alert_event", _event(_drift()), host["client"])
    [created] = host["registry"].created
    assert (created.trigger_kind, created.status) == ("drift_alert", "pending")
    [(name, _, payload)] = host["client"].started
    assert (name, payload["first_work"]["run_id"]) == ("model_coordinator", created.run_id)


def test_the_cooldown_is_the_models_own(
    app_functions: dict[str, Any], host: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``triggers.cooldown_hours``: a fraud team that wants an accuracy alert answered within hours can say so."""
    spec = (ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8")
    assert "\ntriggers:\n" in spec
    (tmp_path / "fraud.yaml").write_text(spec.replace("\ntriggers:\n", "\ntriggers:\n  cooldown_hours: 1\n"), "utf-8")
    monkeypatch.setenv("PERENNIAL_MODELS_DIR", str(tmp_path))
    get_runtime.cache_clear()
    host["registry"] = FakeRegistry([_run("fraud-done", "not_promoted", timedelta(hours=2), datetime.now(UTC))])
    request = func.HttpRequest("POST", "/api/alerts/azure-monitor", body=json.dumps(_alert()).encode())
    body = json.loads(_call(app_functions, "azure_monitor_alert", request, host["client"]).get_body())
    assert body["action"] == "retrain", body  # two hours after a run: past this model's hour, within the default day
    assert [r.trigger_kind for r in host["registry"].created] == ["monitor_alert"]


# --------------------------------------------------------------------------- which model (case)

CAPITALISED = KnownModels(frozenset({"FraudUK", "churn"}), {"FraudUK-ep": "FraudUK"})


def _targeting(endpoint: str, rule: str = "latency-p95") -> dict[str, Any]:
    alert = copy.deepcopy(samples.MONITOR_ALERT)
    alert["data"]["essentials"]["alertTargetIDs"] = [samples.WORKSPACE.lower() + f"/onlineendpoints/{endpoint}"]
    alert["data"]["essentials"]["alertRule"] = rule
    return alert


def test_a_lower_cased_alert_target_finds_the_capitalised_endpoints_model() -> None:
    trigger = parse_http(_targeting("frauduk-ep"), CAPITALISED)
    assert trigger.model == "FraudUK", "the spec's spelling, which the registry and blob paths use"
    # No endpoint of that name, but the naming convention <model>-…, in any case.
    assert parse_http(_targeting("frauduk-canary"), KnownModels(frozenset({"FraudUK"}))).model == "FraudUK"


def test_model_name_prefixes_ignore_case_and_keep_the_specs_spelling() -> None:
    assert parse_http(_targeting("other-ep", rule="frauduk-error-rate"), CAPITALISED).model == "FraudUK"
    drift = _drift()
    drift["data"]["DataDriftName"] = "frauduk-monitor"
    assert parse_event(drift, CAPITALISED).model == "FraudUK"
    deployed = {
        **samples.DRIFT,
        "eventType": "Microsoft.MachineLearningServices.ModelDeployed",
        "data": {"ServiceName": "frauduk-ep", "ModelIds": "FraudUK:3"},
    }
    assert parse_event(deployed, CAPITALISED).model == "FraudUK"
    # Two names alike but for case: the one spelt as the alert spells it wins.
    twins = KnownModels(frozenset({"fraud", "Fraud"}))
    assert parse_http(_targeting("x", rule="Fraud-latency"), twins).model == "Fraud"
    assert parse_http(_targeting("x", rule="fraud-latency"), twins).model == "fraud"


@pytest.mark.parametrize(
    ("body", "status", "title"),
    [
        (b"{}", 400, "Not an alert"),  # was read as a retrain request and named its fields
        (json.dumps({"reason": "x"}).encode(), 400, "Not an alert"),
        (b" " * (1024 * 1024 + 1), 413, "Body too large"),  # was a 400 "Malformed alert"
    ],
)
def test_the_webhook_says_what_it_expects(
    app_functions: dict[str, Any], host: dict[str, Any], body: bytes, status: int, title: str
) -> None:
    request = func.HttpRequest("POST", "/api/alerts/azure-monitor", body=body)
    response = _call(app_functions, "azure_monitor_alert", request, host["client"])
    assert response.status_code == status
    problem = json.loads(response.get_body())
    assert problem["title"] == title
    assert problem["field"] == ("body" if status == 413 else "schemaId")


def test_a_schema_id_spelt_with_json_escapes_is_read_as_an_alert(
    app_functions: dict[str, Any], host: dict[str, Any]
) -> None:
    """The check for a schemaId looked for its bytes and answered "Not an alert: no schemaId" to one spelt
    \\u0073chemaId, which JSON reads as the same key; the alert's own problem is named instead."""
    body = b'{"\\u0073chemaId": "azureMonitorCommonAlertSchema"}'
    request = func.HttpRequest("POST", "/api/alerts/azure-monitor", body=body)
    response = _call(app_functions, "azure_monitor_alert", request, host["client"])
    problem = json.loads(response.get_body())
    assert (response.status_code, problem["title"]) == (400, "Malformed alert"), problem
    assert problem["field"] != "schemaId"
