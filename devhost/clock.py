"""Clocks for devhost: real time, or a virtual clock that tests (and ``POST /admin/clock``) move.

Durable timers, NCRONTAB timers and orchestration timestamps all read the host's clock, so a
virtual clock lets a test run hours of timer-driven orchestration in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devhost.files import write_text_atomically


def utcnow() -> datetime:
    return datetime.now(UTC)


class RealClock:
    """Wall-clock time (UTC)."""

    def now(self) -> datetime:
        return utcnow()

    async def sleep_until(self, when: datetime) -> None:
        delay = (when - utcnow()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """A clock that stands still until :meth:`advance` or :meth:`set` moves it forward.

    Waiters registered with :meth:`sleep_until` wake once the clock reaches their time. It never
    goes backwards: orchestration timestamps must be monotonic.
    """

    def __init__(self, start: datetime | None = None, path: Path | None = None) -> None:
        self._now = (start or utcnow()).astimezone(UTC)
        self._changed = asyncio.Event()
        self._waiters = 0
        self._path = path

    @classmethod
    def persistent(cls, path: Path) -> VirtualClock:
        """A virtual clock kept in ``path``: a host restarted on the same state resumes at the time it had
        reached, so durable timers set before a crash fire when they would have (not hours later)."""
        start = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            start = datetime.fromisoformat(path.read_text(encoding="utf-8").strip())
        return cls(max(start, utcnow()) if start is not None and start.tzinfo else None, path=path)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError(f"advance_seconds={seconds} is negative: a virtual clock only moves forward")
        return self.set(self._now + timedelta(seconds=seconds))

    def set(self, when: datetime) -> datetime:
        when = when.astimezone(UTC)
        if when > self._now:
            self._now = when
            if self._path is not None:
                write_text_atomically(self._path, when.isoformat())
            # Wake every sleeper; each re-checks its own deadline.
            self._changed.set()
            self._changed = asyncio.Event()
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        while self._now < when:
            await self._changed.wait()
