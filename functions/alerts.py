"""Monitoring alerts -> retrain, with the alert recorded as the run's reason.

Two doors: Event Grid (Perennial.RetrainRequested / DriftDetected from our custom topic,
Azure ML DatasetDriftDetected from the workspace) and an HTTP webhook for Azure Monitor
action groups (common alert schema; ``Fired`` acts, ``Resolved`` is only recorded).
"""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from functions import clients
from functions.coordination import send_work
from functions.http import answers_503_when_storage_is_unreachable, json_response, problem
from shared.events import EventError, KnownModels, Trigger, parse_event, parse_http
from shared.logs import correlated
from shared.registry import pending_run, run_id_for
from shared.runtime import get_runtime
from shared.workflow import TriggerInfo

bp = df.Blueprint()
logger = logging.getLogger("perennial.alerts")

#: Trigger kinds that start a retrain. Run-status and model events, and Perennial's own
#: outbound events that come back through the topic subscription, are recorded only.
RETRAIN_KINDS = frozenset({"retrain_requested", "drift_alert", "monitor_alert"})


def retrain_work(trigger: Trigger) -> dict[str, object]:
    """The coordinator's 'retrain' work item for an actionable trigger (run id = f(trigger))."""
    info = TriggerInfo(
        kind=trigger.kind, reason=trigger.reason, source_event_id=trigger.event_id, details=trigger.details
    )
    return {"kind": "retrain", "run_id": run_id_for(trigger.model, trigger.dedupe_key), "trigger": info.dump()}


async def _act(trigger: Trigger, client: df.DurableOrchestrationClient) -> str | None:
    if trigger.kind not in RETRAIN_KINDS or not trigger.actionable:
        logger.info("recorded %s for %s (no action): %s", trigger.event_type, trigger.model, trigger.reason)
        return None
    work = retrain_work(trigger)
    run_id = str(work["run_id"])
    # Recorded as pending first, as the API does: if the event to the coordinator is lost, the coordinator
    # still finds the request (pending_work). A redelivered alert finds its run already there.
    clients.registry().create_run(
        pending_run(trigger.model, run_id, trigger.kind, trigger.reason, trigger.event_id, work)
    )
    await send_work(client, trigger.model, work)
    logger.info("retrain requested for %s: %s", trigger.model, trigger.reason, extra={"run_id": work["run_id"]})
    return str(work["run_id"])


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
@answers_503_when_storage_is_unreachable
async def azure_monitor_alert(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Azure Monitor action-group webhook (common alert schema)."""
    with correlated():
        try:
            trigger = parse_http(req.get_body(), KnownModels.from_specs(get_runtime().specs))
        except EventError as exc:
            return problem(400, "Malformed alert", str(exc), field=exc.field)
        if trigger.kind != "monitor_alert":
            return problem(400, "Not an alert", "send the Azure Monitor common alert schema", field="schemaId")
        run_id = await _act(trigger, client)
        return json_response(
            {"model": trigger.model, "action": "retrain" if run_id else "recorded", "run_id": run_id}, 202
        )
