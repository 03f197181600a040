"""NCRONTAB schedules as Azure Functions timer triggers read them.

Six fields: ``{second} {minute} {hour} {day} {month} {day-of-week}`` with ``*``, lists
(``1,5``), ranges (``9-17``), steps (``*/5``, ``0-30/10``) and month/day names (``Jan``,
``Mon``); day-of-week 0 (or 7) is Sunday. As in NCrontab, day and day-of-week must both match.
The TimeSpan form (``hh:mm:ss``, an interval) is accepted too. Times are UTC (the host's
default ``WEBSITE_TIME_ZONE``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTHS = {
    m: i
    for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_TIMESPAN = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})$")
_EXAMPLE = "'0 */5 * * * *' (every 5 minutes) or '0 0 9 * * Mon-Fri'"


class CronError(ValueError):
    """A schedule that is not a valid NCRONTAB expression; the message names the field."""


def _value(token: str, names: dict[str, int], field: str, expression: str) -> int:
    lowered = token.lower()
    if lowered in names:
        return names[lowered]
    if not token.isdigit():
        raise CronError(f"schedule {expression!r}: {field} value {token!r} is not a number; example: {_EXAMPLE}")
    return int(token)


def _field(text: str, low: int, high: int, field: str, expression: str, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"schedule {expression!r}: {field} step {step_text!r} must be a positive number")
            step = int(step_text)
        if part in ("*", ""):
            start, stop = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, stop = _value(a, names, field, expression), _value(b, names, field, expression)
        else:
            start = _value(part, names, field, expression)
            stop = high if step > 1 else start
        if field == "day-of-week":
            start, stop = (0 if start == 7 else start), (6 if stop == 7 and start != 7 else stop)
        if not (low <= start <= high and low <= stop <= high and start <= stop):
            raise CronError(f"schedule {expression!r}: {field} {part!r} is outside {low}-{high}")
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A parsed timer schedule; :meth:`next_after` gives the next occurrence strictly after a time."""

    expression: str
    seconds: frozenset[int] = frozenset()
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    interval: timedelta | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        text = expression.strip()
        span = _TIMESPAN.match(text)
        if span:
            h, m, s = (int(g) for g in span.groups())
            interval = timedelta(hours=h, minutes=m, seconds=s)
            if interval <= timedelta(0):
                raise CronError(f"schedule {expression!r}: a TimeSpan interval must be positive")
            return cls(expression, interval=interval)
        fields = text.split()
        if len(fields) != 6:
            raise CronError(
                f"schedule {expression!r} has {len(fields)} fields; NCRONTAB needs 6 "
                f"(second minute hour day month day-of-week), e.g. {_EXAMPLE}"
            )
        return cls(
            expression,
            seconds=_field(fields[0], 0, 59, "second", text, {}),
            minutes=_field(fields[1], 0, 59, "minute", text, {}),
            hours=_field(fields[2], 0, 23, "hour", text, {}),
            days=_field(fields[3], 1, 31, "day", text, {}),
            months=_field(fields[4], 1, 12, "month", text, _MONTHS),
            weekdays=_field(fields[5], 0, 7, "day-of-week", text, _DAYS),
        )

    def next_after(self, when: datetime) -> datetime:
        when = when.astimezone(UTC).replace(microsecond=0)
        if self.interval is not None:
            return when + self.interval
        day = when.replace(hour=0, minute=0, second=0)
        for _ in range(366 * 5):  # a schedule like "Feb 29 on a Monday" recurs within 28 years; 5 is plenty here
            weekday = (day.weekday() + 1) % 7  # Python: Monday=0; cron: Sunday=0
            if day.month in self.months and day.day in self.days and weekday in self.weekdays:
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        for second in sorted(self.seconds):
                            candidate = day.replace(hour=hour, minute=minute, second=second)
                            if candidate > when:
                                return candidate
            day += timedelta(days=1)
        raise CronError(f"schedule {self.expression!r} never fires within 5 years")
