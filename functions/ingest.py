"""Event Grid BlobCreated on the landing container -> the model's coordinator (dedupe, debounce)."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from functions import clients
from functions.coordination import send_work
from shared.events import EventError, KnownModels, parse_event
from shared.logs import correlated
from shared.runtime import get_runtime
from shared.workflow import BlobItem

bp = df.Blueprint()
logger = logging.getLogger("perennial.ingest")


@bp.function_name("on_blob_created")
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def on_blob_created(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    """A blob landed: skip it if this (url, eTag) already trained, else queue it for the model's next run."""
    runtime = get_runtime()
    with correlated(event.id):
        try:
            trigger = parse_event(event, KnownModels.from_specs(runtime.specs))
        except EventError as exc:
            # Redelivery cannot fix a malformed event: acknowledge it and say why (Event Grid would retry a failure).
            logger.warning("rejected event %s: %s", event.id, exc, extra={"event_id": event.id})
            return
        if trigger.blob is None or not trigger.actionable:
            logger.info("event %s needs no action: %s", event.id, trigger.reason)
            return
        blob = trigger.blob
        if not clients.store().holds(blob.url):
            # Another account's event (a second subscription pointed at this app): its blobs are not in our landing
            # container, and a run would find nothing new there. Acknowledged, not retried.
            logger.warning(
                "rejected event %s: %s is not in this app's storage account; point that account's Event Grid "
                "subscription elsewhere", event.id, blob.url, extra={"event_id": event.id},
            )  # fmt: skip
            return
        registry = clients.registry()
        seen = registry.seen(trigger.model, blob.url, blob.etag)
        if seen is not None:
            logger.info("blob %s (eTag %s) already belongs to run %s; ignored", blob.name, blob.etag, seen.run_id)
            return
        item = BlobItem(url=blob.url, container=blob.container, name=blob.name, etag=blob.etag, size=blob.size)
        instance = await send_work(client, trigger.model, {"kind": "blobs", "blobs": [item.dump()]})
        logger.info("queued %s for %s", blob.name, instance, extra={"model": trigger.model})
