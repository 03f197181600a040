"""Timer trigger: evaluates the retraining policy per model and publishes RetrainRequested.

Glue only: every tick (``PERENNIAL_RETRAIN_SCHEDULE``, NCRONTAB, hourly by default) hands each model
to :func:`shared.live.run_schedule`, which checks age, live performance on delayed labels and drift of
recent scoring inputs, and publishes ``Perennial.RetrainRequested`` (deterministic id: model + hour
slot). The event comes back through Event Grid to ``alerts.on_alert_event``, so every retrain goes
through the same door. The schedule string is resolved from settings when the app loads (rather than
``%PERENNIAL_RETRAIN_SCHEDULE%``), so the local host and Azure read the same value.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from functions import clients
from shared.live import run_schedule
from shared.logs import correlated
from shared.runtime import get_runtime
from shared.spec import ModelSpec

bp = df.Blueprint()
logger = logging.getLogger("perennial.schedule")


def _failed(spec: ModelSpec, exc: Exception) -> None:
    logger.error("schedule check of %s failed: %s", spec.name, exc, exc_info=exc)


@bp.function_name("retrain_schedule")
@bp.timer_trigger(arg_name="timer", schedule=get_runtime().settings.retrain_schedule, use_monitor=True)
def retrain_schedule(timer: func.TimerRequest) -> None:
    """Check every model with a champion; ask for a retrain where the policy says so."""
    with correlated():
        now = datetime.now(UTC)
        if timer.past_due:
            logger.info("retrain schedule is past due; checking now (%s)", now.isoformat())
        checks = run_schedule(
            get_runtime().specs.values(),
            now,
            registry=clients.registry(),
            store=clients.store(),
            platform=clients.platform(),
            publisher=clients.publisher(),
            on_error=_failed,
        )
        for check in checks:
            level = logging.WARNING if check.action == "failed" else logging.INFO
            logger.log(
                level,
                "schedule %s %s: %s",
                check.model,
                check.action,
                check.summary,
                extra={"model": check.model, "slot": check.slot, "event_id": check.event_id},
            )
