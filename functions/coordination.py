"""Hand work to a model's coordinator orchestration: start it if it is not running, else raise an event.

Each model has one eternal ``model_coordinator`` instance (``model-<name>``). Two triggers may
race to start it; the loser's start is refused and it raises the event instead. A blob whose
event is lost anyway stays in the model's landing folder, and the next run (started by another
blob, a retrain request or the schedule) takes it with the rest: a run trains on the whole folder.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from functions.orchestrators import coordinator_id

logger = logging.getLogger("perennial.coordination")

_ALIVE = {
    OrchestrationRuntimeStatus.Running,
    OrchestrationRuntimeStatus.Pending,
    OrchestrationRuntimeStatus.ContinuedAsNew,
    OrchestrationRuntimeStatus.Suspended,
}


async def send_work(client: df.DurableOrchestrationClient, model: str, work: dict[str, Any]) -> str:
    """Deliver ``work`` to the model's coordinator; returns its instance id."""
    instance = coordinator_id(model)
    last_error: Exception | None = None
    for _ in range(4):
        status = await client.get_status(instance)
        alive = status is not None and status.runtime_status in _ALIVE
        try:
            if alive:
                await client.raise_event(instance, "work", work)
            else:
                await client.start_new("model_coordinator", instance, {"model": model, "first_work": work})
            return instance
        except Exception as exc:  # the SDK raises bare Exception for 404/409/410: look again and retry
            last_error = exc
            logger.info("coordinator %s changed state while we delivered work (%s); retrying", instance, exc)
    raise RuntimeError(f"could not deliver work to {instance}: {last_error}")
