"""Timer trigger, every ten minutes: close runs that nothing runs any more, hand requests nothing picked up to
their coordinator again and start an ended coordinator again for blobs that wait (``functions.stranded``); purge
orchestrations that ended a month ago (``functions.retention``); between runs, put a left-over traffic split right
(the champion back at 100 %) and retire idle deployments (the previous champion's after its grace period,
leftovers at once); then send the events the topic refused earlier (``shared.reliable_publish``)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from functions import clients
from functions.retention import purge_ended_orchestrations
from functions.stranded import close_stranded_runs, deliver_undelivered_request, revive_coordinator
from shared.housekeeping import HOUSEKEEPING_EVERY, repair_traffic, retire_idle_deployments
from shared.logs import correlated
from shared.platform import PlatformError
from shared.runtime import get_runtime

bp = df.Blueprint()
logger = logging.getLogger("perennial.housekeeping")

RETIRE_SCHEDULE = f"0 */{HOUSEKEEPING_EVERY.seconds // 60} * * * *"  # NCRONTAB: every HOUSEKEEPING_EVERY


def _send_unsent_events(model: str) -> None:
    """Send what the topic refused earlier; any trouble is logged and left for the next tick."""
    try:
        report = clients.publisher().send_unsent(model)
    except Exception as exc:  # the events stay where they are; nothing here may stop the other models
        logger.warning("could not send the unsent events of %s: %s", model, exc, exc_info=exc)
        return
    if report.sent or report.dead_lettered:
        logger.info("%s: sent %d unsent event(s), %d refused for good", model, report.sent, report.dead_lettered)
    if report.left:
        logger.warning("%s: %d event(s) still unsent: %s", model, report.left, report.error)


@bp.timer_trigger(arg_name="timer", schedule=RETIRE_SCHEDULE, run_on_startup=False)
@bp.durable_client_input(client_name="client")
async def retire_deployments(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    runtime = get_runtime()
    with correlated():
        # Runs that nothing runs any more first: one would keep its model from ever being tidied (or trained) again.
        for model in sorted(runtime.specs):
            try:
                await close_stranded_runs(client, clients.registry(), clients.publisher(), model, datetime.now(UTC))
                await deliver_undelivered_request(client, clients.registry(), model, datetime.now(UTC))
                spec = runtime.specs[model]
                await revive_coordinator(client, spec, clients.store(), clients.registry(), datetime.now(UTC))
            except Exception as exc:  # one model's trouble must not stop the others
                logger.warning("could not look for stranded runs, requests or blobs of %s: %s", model, exc)
        try:
            await purge_ended_orchestrations(client, datetime.now(UTC))
        except Exception as exc:  # only storage is at stake: the next tick tries again
            logger.warning("could not purge ended orchestrations: %s", exc)
        # The platform's calls block (deleting a deployment waits on Azure): off the worker's event loop, which the
        # HTTP routes share.
        await asyncio.to_thread(_tidy_endpoints_and_send_events)


def _tidy_endpoints_and_send_events() -> None:
    runtime = get_runtime()
    platform, registry = clients.platform(), clients.registry()
    # Traffic first: putting the champion back at 100 % must not wait behind a slow event topic.
    for model, spec in sorted(runtime.specs.items()):
        try:
            repair_traffic(model, spec, platform, registry)  # first: a repaired split leaves idle leftovers
            retired = retire_idle_deployments(model, spec, platform, registry, datetime.now(UTC))
        except PlatformError as exc:  # one model's trouble must not stop the others; the next tick retries
            logger.warning("could not tidy the endpoint of %s: %s", model, exc)
            continue
        for retirement in retired:
            logger.info("%s: retired %s (%s)", model, retirement.deployment, retirement.reason)
    for model in sorted(runtime.specs):
        _send_unsent_events(model)
