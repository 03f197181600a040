"""Timer trigger, every ten minutes: send the events the topic refused earlier (``shared.reliable_publish``); between
runs, put a left-over traffic split right (the champion back at 100 %), then retire idle deployments (the previous
champion's after its grace period, leftovers at once)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import AzureError

from functions import clients
from shared.housekeeping import repair_traffic, retire_idle_deployments
from shared.logs import correlated
from shared.platform import PlatformError
from shared.reliable_publish import ReliablePublisher
from shared.runtime import get_runtime
from shared.storage import StorageError

bp = df.Blueprint()
logger = logging.getLogger("perennial.housekeeping")

#: Every ten minutes: retire_after_hours is measured in hours, so this is precise enough and cheap.
RETIRE_SCHEDULE = "0 */10 * * * *"


def _send_unsent_events(model: str, publisher: ReliablePublisher) -> None:
    try:
        report = publisher.send_unsent(model)
    except (AzureError, StorageError) as exc:  # storage trouble: the events stay, the next tick tries again
        logger.warning("could not read the unsent events of %s: %s", model, exc)
        return
    if report.sent or report.dead_lettered:
        logger.info("%s: sent %d unsent event(s), %d refused for good", model, report.sent, report.dead_lettered)
    if report.left:
        logger.warning("%s: %d event(s) still unsent: %s", model, report.left, report.error)


@bp.timer_trigger(arg_name="timer", schedule=RETIRE_SCHEDULE, run_on_startup=False)
def retire_deployments(timer: func.TimerRequest) -> None:
    runtime = get_runtime()
    platform, registry, publisher = clients.platform(), clients.registry(), clients.publisher()
    with correlated():
        for model, spec in sorted(runtime.specs.items()):
            _send_unsent_events(model, publisher)
            try:
                repair_traffic(model, spec, platform, registry)  # first: a repaired split leaves idle leftovers
                retired = retire_idle_deployments(model, spec, platform, registry, datetime.now(UTC))
            except PlatformError as exc:  # one model's trouble must not stop the others; the next tick retries
                logger.warning("could not tidy the endpoint of %s: %s", model, exc)
                continue
            for retirement in retired:
                logger.info("%s: retired %s (%s)", model, retirement.deployment, retirement.reason)
