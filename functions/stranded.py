"""Runs that nothing runs any more: closing the ``running`` ones, delivering the ``pending`` ones again.

A run's orchestration can end without recording an outcome: an operator terminates or purges it, or the
coordinator's crash record fails past its retries. Such a run would block its model for good (every retrain a
409, housekeeping off). The abort route closes one on request; the housekeeping timer closes one by itself.

A request is recorded as ``pending`` before its work is sent to the model's coordinator. If that send failed
(the API answered 503) or its event was lost while the coordinator waited idle, nothing would claim it and it
would block its model just the same: the housekeeping timer sends its work again.

Landed blobs no run has claimed wait for a coordinator too; one that has ended (terminated by an operator, or
failed on a bug) or never started would leave them until the next blob's event: the timer starts it again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime

import azure.durable_functions as df

from functions.coordination import CoordinatorUnreachable, send_work
from functions.orchestrators import coordinator_id
from shared.housekeeping import (
    ENDED_STATES,
    coordinator_to_revive,
    stranded_reason,
    unclaimed_landing,
    undelivered_reason,
)
from shared.publish import run_completed_event
from shared.registry import Registry, Run
from shared.reliable_publish import ReliablePublisher
from shared.spec import ModelSpec
from shared.storage import BlobStore
from shared.workflow import usable_request

logger = logging.getLogger("perennial.stranded")


async def stranded(client: df.DurableOrchestrationClient, run: Run, now: datetime) -> str | None:
    """Why nothing runs ``run`` although its record says running (:func:`shared.housekeeping.stranded_reason`),
    or None; also None when a status cannot be read."""
    if run.status != "running":
        return None
    found = []
    for instance in (run.instance_id or run.run_id, f"{run.run_id}-rollout"):
        try:
            found.append(await client.get_status(instance))
        except Exception:  # the SDK raises bare Exception on an unexpected answer: cannot tell
            logger.info("could not read the status of %s", instance, exc_info=True)
            return None
    states = [s.runtime_status.value if s is not None and s.runtime_status is not None else None for s in found]
    since = getattr(found[0], "last_updated_time", None)  # when the orchestration failed, for a Failed one
    if isinstance(since, datetime) and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return stranded_reason(run, states[0], states[1], since if isinstance(since, datetime) else None, now)


async def close_stranded_runs(
    client: df.DurableOrchestrationClient, registry: Registry, publisher: ReliablePublisher, model: str, now: datetime
) -> list[Run]:
    """Record every stranded run of ``model`` as ``failed`` with why (``RunCompleted`` published); the runs closed."""
    closed: list[Run] = []
    for run in registry.active_runs(model):
        why = await stranded(client, run, now)
        if why is None:
            continue
        reason = f"closed by housekeeping: {why}; its jobs and traffic are tidied like any ended run's"

        def close(current: Run, reason: str = reason) -> Run:
            # Conditional (ETag): a run that recorded its outcome meanwhile keeps it.
            if current.status != "running":
                return current
            return replace(current, status="failed", stage="done", error=reason, decision_reasons=[reason])

        updated = registry.update_run(model, run.run_id, close)
        if updated.status != "failed" or updated.error != reason:
            continue
        event = run_completed_event(model, updated.run_id, updated.status, updated.decision, updated.decision_reasons)
        await asyncio.to_thread(publisher.publish, [event])  # off the event loop the HTTP routes share
        logger.warning("%s: %s", run.run_id, reason, extra={"model": model, "run_id": run.run_id})
        closed.append(updated)
    return closed


async def deliver_undelivered_request(
    client: df.DurableOrchestrationClient, registry: Registry, model: str, now: datetime
) -> str | None:
    """Send again the work of ``model``'s oldest ``pending`` request when its coordinator will not pick it up by
    itself (:func:`shared.housekeeping.undelivered_reason`); the run id sent, or None. One is enough: the
    coordinator runs it, then finds the others in storage. It takes a run id once, so a repeat is harmless."""
    pending = sorted((r for r in registry.active_runs(model) if r.status == "pending"), key=lambda r: r.created_at)
    # Only a work item claim_run can take (pending_work's rule): a malformed one would fail the coordinator's claim,
    # and the next tick would find it Failed and send the item again.
    usable = [(run, work) for run in pending if (work := usable_request(run.details.get("work"), run.run_id))]
    if not usable:
        return None
    oldest, work = usable[0]
    status = await client.get_status(coordinator_id(model))
    state = status.runtime_status.value if status is not None and status.runtime_status is not None else None
    custom = getattr(status, "custom_status", None)
    why = undelivered_reason(oldest, state, custom.get("stage") if isinstance(custom, dict) else None, now)
    if why is None:
        return None
    run_id = oldest.run_id
    try:
        await send_work(client, model, work)
    except CoordinatorUnreachable as exc:  # the next tick tries again
        logger.warning("%s: could not deliver pending request %s (%s): %s", model, run_id, why, exc)
        return None
    logger.warning("%s: delivered pending request %s again: %s", model, run_id, why, extra={"model": model})
    return run_id


async def revive_coordinator(
    client: df.DurableOrchestrationClient, spec: ModelSpec, store: BlobStore, registry: Registry, now: datetime
) -> str | None:
    """Start ``spec``'s coordinator again with the landed blobs no run has claimed when it has ended or does not
    exist (:func:`shared.housekeeping.coordinator_to_revive`); why, or None. A live coordinator finds them itself."""
    status = await client.get_status(coordinator_id(spec.name))
    state = status.runtime_status.value if status is not None and status.runtime_status is not None else None
    if state is not None and state not in ENDED_STATES:
        return None  # alive: it looks in storage between runs; no need to list landing
    blobs = unclaimed_landing(spec, store, registry, now)
    why = coordinator_to_revive(state, len(blobs))
    if why is None:
        return None
    if state == "Failed":  # starting it again replaces its history: keep what it failed on
        logger.error("%s: its coordinator had failed: %s", spec.name, str(getattr(status, "output", None))[:2000])
    try:
        await send_work(client, spec.name, {"kind": "blobs", "blobs": [b.dump() for b in blobs]})
    except CoordinatorUnreachable as exc:  # the next tick tries again
        logger.warning("%s: could not start its coordinator again (%s): %s", spec.name, why, exc)
        return None
    logger.warning("%s: started its coordinator again: %s", spec.name, why, extra={"model": spec.name})
    return why
