"""Purge ended orchestrations once ``shared.housekeeping.HISTORY_RETENTION`` has passed (the housekeeping timer).

Every run leaves its orchestration, one per training job and evaluation, and its rollout behind in the task hub.
Nothing reads them once they ended (the registry records every outcome; stranded runs are found among runs still
pending or running), so keeping them only grows storage. Only Completed, Failed and Terminated instances are
purged: a coordinator waiting for work, or a run waiting for approval, is Running, whatever its age.
"""

from __future__ import annotations

import logging
from datetime import datetime

import azure.durable_functions as df
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from shared.housekeeping import HISTORY_EPOCH, HISTORY_RETENTION

logger = logging.getLogger("perennial.housekeeping")

ENDED = [
    OrchestrationRuntimeStatus.Completed,
    OrchestrationRuntimeStatus.Failed,
    OrchestrationRuntimeStatus.Terminated,
]


async def purge_ended_orchestrations(client: df.DurableOrchestrationClient, now: datetime) -> int:
    """Purge the orchestrations that ended and were created before ``now - HISTORY_RETENTION``; how many went."""
    result = await client.purge_instance_history_by(
        created_time_from=HISTORY_EPOCH, created_time_to=now - HISTORY_RETENTION, runtime_status=ENDED
    )
    deleted = int(result.instances_deleted or 0)
    if deleted:
        logger.info("purged %d ended orchestration(s) created more than %s ago", deleted, HISTORY_RETENTION)
    return deleted
