"""Hand work to a model's coordinator orchestration: start it if it is not running, else raise an event.

Each model has one eternal ``model_coordinator`` instance (``model-<name>``). Two triggers may
race to start it; the loser's start is refused and it raises the event instead. A blob whose
event is lost anyway stays in the model's landing folder, and the next run (started by another
blob, a retrain request or the schedule) takes it with the rest: a run trains on the whole folder.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from functions.orchestrators import coordinator_id
from shared.workflow import job_instance_id

logger = logging.getLogger("perennial.coordination")

_ALIVE = {
    OrchestrationRuntimeStatus.Running,
    OrchestrationRuntimeStatus.Pending,
    OrchestrationRuntimeStatus.ContinuedAsNew,
    OrchestrationRuntimeStatus.Suspended,
}
_ATTEMPTS = 4
#: How long a listing waits for a coordinator's status (the SDK's own limit is minutes).
STATUS_TIMEOUT_SECONDS = 5.0
_BACKOFF_SECONDS = 0.25


class CoordinatorUnreachable(RuntimeError):
    """The coordinator kept changing state (or its task hub could not be reached) while work was delivered.

    A request is recorded as a pending run before its work is sent, so it is not lost: a retry with the same
    ``Idempotency-Key`` sends it again, and the housekeeping timer delivers a request left pending (see
    :func:`functions.stranded.deliver_undelivered_request`)."""

    def __init__(self, instance: str, run_id: str | None, cause: Exception | None) -> None:
        self.instance, self.run_id = instance, run_id
        super().__init__(f"could not deliver work to {instance}: {cause}")


async def _custom_status(client: df.DurableOrchestrationClient, instance: str) -> dict[str, Any] | None:
    """The custom status of ``instance`` while it is alive, read within STATUS_TIMEOUT_SECONDS; else None. A status
    that cannot be read is None too: callers only add it to what they answer."""
    try:
        status = await asyncio.wait_for(client.get_status(instance), STATUS_TIMEOUT_SECONDS)
    except Exception as exc:  # the SDK raises bare Exception for the task hub's errors; or it took too long
        logger.warning("could not read %s's status: %r", instance, exc)
        return None
    custom = getattr(status, "custom_status", None) if status is not None else None
    if status is None or status.runtime_status not in _ALIVE or not isinstance(custom, dict):
        return None
    return custom


async def coordinator_view(
    client: df.DurableOrchestrationClient, model: str
) -> tuple[dict[str, Any] | None, str | None]:
    """What the model's coordinator says of its next run: ``{blobs, starts_at, deadline}`` while it collects a burst
    of landed blobs (a run starts at ``starts_at`` unless another lands first, and by ``deadline``), else None; and
    why it could not claim its work, while it pauses before looking in storage again, else None."""
    custom = await _custom_status(client, coordinator_id(model)) or {}
    stage = custom.get("stage")
    waiting = {key: custom.get(key) for key in ("blobs", "starts_at", "deadline")} if stage == "debouncing" else None
    claim_failed = str(custom.get("error") or "unknown error") if stage == "claim_failed" else None
    return waiting, claim_failed


async def job_states(client: df.DurableOrchestrationClient, base_names: list[str]) -> list[dict[str, Any]]:
    """The jobs of ``base_names`` that are being watched now, as their ``ml_job`` shows them
    (``shared.workflow.job_progress``), read side by side; a job not started yet or already ended is left out."""
    found = await asyncio.gather(*(_custom_status(client, job_instance_id(base)) for base in base_names))
    return [{"base_name": base, **state} for base, state in zip(base_names, found, strict=True) if state is not None]


async def send_work(client: df.DurableOrchestrationClient, model: str, work: dict[str, Any]) -> str:
    """Deliver ``work`` to the model's coordinator; returns its instance id. :class:`CoordinatorUnreachable`
    after four tries."""
    instance = coordinator_id(model)
    last_error: Exception | None = None
    for attempt in range(_ATTEMPTS):
        if attempt:
            await asyncio.sleep(_BACKOFF_SECONDS * 2 ** (attempt - 1))  # a continue_as_new takes a moment
        try:
            status = await client.get_status(instance)
            if status is not None and status.runtime_status in _ALIVE:
                await client.raise_event(instance, "work", work)
            else:
                await client.start_new("model_coordinator", instance, {"model": model, "first_work": work})
            return instance
        except Exception as exc:  # the SDK raises bare Exception for 404/409/410: look again and retry
            last_error = exc
            logger.info("coordinator %s changed state while we delivered work (%s); retrying", instance, exc)
    run_id = work.get("run_id")
    raise CoordinatorUnreachable(instance, run_id if isinstance(run_id, str) else None, last_error)
