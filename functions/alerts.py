"""Monitoring alerts (Event Grid events, Azure Monitor common alert schema) -> retrain."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint()
logger = logging.getLogger("perennial.alerts")


@bp.function_name("on_alert_event")
@bp.event_grid_trigger(arg_name="event")
def on_alert_event(event: func.EventGridEvent) -> None:
    """Receives Perennial.* events from our custom topic and Azure ML events (wired by infra/ and devhost)."""
    # Acting on alerts is built by the retraining-loop issue; until then we only record the event.
    logger.info("alert event received", extra={"event_id": event.id, "subject": event.subject})
