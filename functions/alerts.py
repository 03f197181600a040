"""Monitoring alerts -> retrain, with the alert recorded as the run's reason.

Two doors: Event Grid (Perennial.RetrainRequested / DriftDetected from our custom topic,
Azure ML DatasetDriftDetected from the workspace) and an HTTP webhook for Azure Monitor
action groups (common alert schema; ``Fired`` acts, ``Resolved`` is only recorded).

A monitor's alert (drift, Azure Monitor) that finds a run of the model in progress, or one created
within the schedule's cool-down, is suppressed (:func:`shared.events.decide_alert`): acknowledged,
logged with the reason, and answered ``"action": "suppressed"`` over HTTP; no run is queued.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from functions import clients
from functions.coordination import send_work
from functions.http import answers_503_when_unavailable, json_response, problem
from shared.events import (
    MAX_BODY_BYTES,
    MONITOR_KINDS,
    AlertDecision,
    EventError,
    KnownModels,
    Trigger,
    decide_alert,
    parse_event,
    parse_http,
)
from shared.logs import correlated
from shared.registry import pending_run, run_id_for
from shared.runtime import get_runtime
from shared.workflow import TriggerInfo

bp = df.Blueprint()
logger = logging.getLogger("perennial.alerts")


def retrain_work(trigger: Trigger) -> dict[str, object]:
    """The coordinator's 'retrain' work item for an actionable trigger (run id = f(trigger))."""
    info = TriggerInfo(
        kind=trigger.kind, reason=trigger.reason, source_event_id=trigger.event_id, details=trigger.details
    )
    return {"kind": "retrain", "run_id": run_id_for(trigger.model, trigger.dedupe_key), "trigger": info.dump()}


async def _act(trigger: Trigger, client: df.DurableOrchestrationClient) -> tuple[AlertDecision, str | None]:
    """What the alert did (and why), and the run it started or found, if any."""
    run_id = run_id_for(trigger.model, trigger.dedupe_key)
    # Only a monitor's alert looks at the model's runs (the schedule reads as many).
    runs = (
        clients.registry().runs(trigger.model, limit=50) if trigger.kind in MONITOR_KINDS and trigger.actionable else []
    )
    cooldown = get_runtime().spec(trigger.model).triggers.cooldown
    decision = decide_alert(trigger, run_id, runs, datetime.now(UTC), cooldown)
    if decision.action == "recorded":
        logger.info("recorded %s for %s (no action): %s", trigger.event_type, trigger.model, trigger.reason)
        return decision, None
    if decision.action == "suppressed":
        logger.warning(
            "suppressed %s for %s (no run): %s; alert: %s (%s)",
            trigger.event_type,
            trigger.model,
            decision.reason,
            trigger.reason,
            decision.hint,
            extra={"model": trigger.model, "event_id": trigger.event_id, "suppressed": decision.reason},
        )
        return decision, None
    work = retrain_work(trigger)
    # Recorded as pending first, as the API does: if the event to the coordinator is lost, the coordinator
    # still finds the request (pending_work). A redelivered alert finds its run already there.
    clients.registry().create_run(
        pending_run(trigger.model, run_id, trigger.kind, trigger.reason, trigger.event_id, work)
    )
    await send_work(client, trigger.model, work)
    logger.info("retrain requested for %s: %s", trigger.model, trigger.reason, extra={"run_id": run_id})
    return decision, run_id


@bp.function_name("on_alert_event")
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def on_alert_event(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    """Perennial.* and Azure ML events from Event Grid."""
    with correlated(event.id):
        try:
            trigger = parse_event(event, KnownModels.from_specs(get_runtime().specs))
        except EventError as exc:
            logger.warning("rejected event %s: %s", event.id, exc, extra={"event_id": event.id})
            return
        await _act(trigger, client)


@bp.route(route="alerts/azure-monitor", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_unavailable
async def azure_monitor_alert(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Azure Monitor action-group webhook (common alert schema)."""
    with correlated():
        raw = req.get_body()
        if len(raw) > MAX_BODY_BYTES:
            detail = f"the body is {len(raw):,} bytes; an alert is at most {MAX_BODY_BYTES:,}"
            return problem(413, "Body too large", detail, field="body")
        if not _names_a_schema(raw):  # parse_http would read it as a retrain request and name its fields
            detail = "no schemaId: send the Azure Monitor common alert schema (enable it on the action group)"
            return problem(400, "Not an alert", detail, field="schemaId")
        try:
            trigger = parse_http(raw, KnownModels.from_specs(get_runtime().specs))
        except EventError as exc:
            return problem(400, "Malformed alert", str(exc), field=exc.field)
        if trigger.kind != "monitor_alert":
            return problem(400, "Not an alert", "send the Azure Monitor common alert schema", field="schemaId")
        decision, run_id = await _act(trigger, client)
        body: dict[str, object] = {"model": trigger.model, "action": decision.action, "run_id": run_id}
        if decision.action == "suppressed":
            body.update(reason=decision.reason, hint=decision.hint)
        return json_response(body, 202)


def _names_a_schema(raw: bytes) -> bool:
    """Whether the body could be an alert: a JSON object with a ``schemaId`` member (spelt with escapes too, as a
    JSON writer may). A body that is not JSON at all is left to the parser, which says what is wrong with it."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return True
    return isinstance(document, dict) and "schemaId" in document
