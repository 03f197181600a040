"""Timer triggers: NCRONTAB schedules on the host's clock, ``run_on_startup`` and ``past_due``.

The last occurrence each timer handled is kept in ``<state>/timers.json``; when devhost starts
after an occurrence was missed, the function runs once with ``past_due=True``, as the host's
schedule monitor does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from devhost.app_loader import AppFunction
from devhost.components import Clock
from devhost.cron import Schedule
from devhost.durable.history import format_time, parse_time
from devhost.errors import AppLoadError
from devhost.files import write_text_atomically

logger = logging.getLogger("devhost")


def timer_request(past_due: bool, last: datetime | None, next_: datetime, now: datetime) -> Any:
    info = {
        "Schedule": {"AdjustForDST": True},
        "ScheduleStatus": {
            "Last": format_time(last) if last else None,
            "Next": format_time(next_),
            "LastUpdated": format_time(now),
        },
        "IsPastDue": past_due,
    }
    return TimerRequestConverter.decode(meta.Datum(json.dumps(info), "json"), trigger_metadata=None)


class TimerRunner:
    def __init__(
        self,
        functions: list[AppFunction],
        clock: Clock,
        state_dir: Path,
        invoke: Callable[[AppFunction, dict[str, Any]], Awaitable[Any]],
    ) -> None:
        self.clock = clock
        self.invoke = invoke
        self.path = state_dir / "timers.json"
        self.schedules: dict[str, tuple[AppFunction, Schedule]] = {}
        for fn in functions:
            expression = str(getattr(fn.trigger, "schedule", "") or "")
            try:
                self.schedules[fn.name] = (fn, Schedule.parse(expression))
            except ValueError as exc:
                raise AppLoadError(f"timer function '{fn.name}': {exc}", "fix its schedule= argument") from None
        self._tasks: list[asyncio.Task[None]] = []

    def _load(self) -> dict[str, str]:
        with contextlib.suppress(OSError, json.JSONDecodeError):
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return {str(k): str(v) for k, v in data.items()}
        return {}

    def _save(self, name: str, when: datetime) -> None:
        data = self._load()
        data[name] = format_time(when)
        write_text_atomically(self.path, json.dumps(data, indent=1))

    def start(self) -> None:
        last = self._load()
        for name, (fn, schedule) in self.schedules.items():
            previous = parse_time(last[name]) if name in last else None
            self._tasks.append(asyncio.create_task(self._run(fn, schedule, previous)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _fire(self, fn: AppFunction, past_due: bool, last: datetime | None, next_: datetime) -> None:
        now = self.clock.now()
        try:
            await self.invoke(fn, {fn.trigger_arg: timer_request(past_due, last, next_, now)})
        except Exception:
            logger.exception("timer function '%s' failed", fn.name)
        self._save(fn.name, now)

    async def _run(self, fn: AppFunction, schedule: Schedule, last: datetime | None) -> None:
        now = self.clock.now()
        if bool(getattr(fn.trigger, "run_on_startup", False)):
            await self._fire(fn, False, last, schedule.next_after(now))
            last = self.clock.now()
        elif last is not None and schedule.next_after(last) < now - timedelta(seconds=1):
            await self._fire(fn, True, last, schedule.next_after(now))  # an occurrence was missed while down
            last = self.clock.now()
        while True:
            due = schedule.next_after(self.clock.now())
            await self.clock.sleep_until(due)
            late = self.clock.now() - due > timedelta(seconds=5)
            await self._fire(fn, late, last, schedule.next_after(due))
            last = due
