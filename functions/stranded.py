"""Runs whose record says ``running`` but that nothing runs any more, and closing them.

A run's orchestration can end without recording an outcome: an operator terminates or purges it, or the
coordinator's crash record fails past its retries. Such a run would block its model for good (every retrain a
409, housekeeping off). The abort route closes one on request; the housekeeping timer closes one by itself.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

import azure.durable_functions as df
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from shared.publish import run_completed_event
from shared.registry import Registry, Run
from shared.reliable_publish import ReliablePublisher

logger = logging.getLogger("perennial.stranded")

#: Orchestration states in which nothing runs a run any more.
ENDED = frozenset(
    {
        OrchestrationRuntimeStatus.Completed,
        OrchestrationRuntimeStatus.Failed,
        OrchestrationRuntimeStatus.Terminated,
        OrchestrationRuntimeStatus.Canceled,
    }
)
#: claim_run marks a run running just before its coordinator's next episode creates the run's instance, and a
#: failed run's outcome is the coordinator's to record (retried for minutes): a missing or failed instance means a
#: stranded run only once the run has been left alone this long.
STARTING_GRACE = timedelta(minutes=10)


async def stranded(client: df.DurableOrchestrationClient, run: Run, now: datetime) -> str | None:
    """Why nothing runs ``run`` although its record says running, or None. When unsure (the status cannot be
    read, a rollout still runs, the grace has not passed), None."""
    if run.status != "running":
        return None
    instances = [run.instance_id or run.run_id, f"{run.run_id}-rollout"]
    states: list[OrchestrationRuntimeStatus | None] = []
    for instance in instances:
        try:
            status = await client.get_status(instance)
        except Exception:  # the SDK raises bare Exception on an unexpected answer: cannot tell
            logger.info("could not read the status of %s", instance, exc_info=True)
            return None
        states.append(status.runtime_status if status is not None else None)
    run_state, rollout_state = states
    if rollout_state is not None and rollout_state not in ENDED:
        return None  # a rollout whose parent was terminated goes on (termination does not cascade)
    settled = now - run.updated_at > STARTING_GRACE
    if run_state is not None and run_state in ENDED and (run_state != OrchestrationRuntimeStatus.Failed or settled):
        return f"its orchestration {instances[0]} is {run_state.value} without an outcome recorded"
    if run_state is None and settled:
        return f"its orchestration {instances[0]} does not exist"
    return None


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
        publisher.publish(
            [run_completed_event(model, updated.run_id, updated.status, updated.decision, updated.decision_reasons)]
        )
        logger.warning("%s: %s", run.run_id, reason, extra={"model": model, "run_id": run.run_id})
        closed.append(updated)
    return closed
