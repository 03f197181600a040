"""Event Grid BlobCreated on the landing container -> the per-model ingest orchestration."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint()
logger = logging.getLogger("perennial.ingest")


@bp.function_name("on_blob_created")
@bp.event_grid_trigger(arg_name="event")
def on_blob_created(event: func.EventGridEvent) -> None:
    """Receives Microsoft.Storage.BlobCreated for the landing container (wired by infra/ and devhost)."""
    # The ingest orchestration is built by the retraining-loop issue; until then we only record the event.
    logger.info("blob event received", extra={"event_id": event.id, "subject": event.subject})
