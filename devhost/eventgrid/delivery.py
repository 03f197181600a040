"""Delivery the way Event Grid does it: at least once, retried with backoff, then dead-lettered.

Each (subscription, event) pair is delivered on its own task as a one-event JSON array
(``maxEventsPerBatch: 1``, as infra/ configures) by POST to
``<host>/runtime/webhooks/eventgrid?functionName=<function>`` with ``aeg-event-type:
Notification``. A 2xx is success. 400/401/403/404/413 are not retried (as Azure does for
webhooks); anything else — a 5xx, a timeout, a refused connection — is retried after
``base × 2^(attempt-1)`` seconds (capped) until ``maxDeliveryAttempts`` or the time-to-live
runs out, then the event is written to the dead-letter folder with Azure's dead-letter
fields (``deadLetterReason``, ``deliveryAttempts``, ``lastHttpStatusCode``, …).

``duplicate_probability`` re-delivers events on purpose, to exercise idempotency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from devhost.eventgrid.subscriptions import Subscription
from devhost.files import write_text_atomically

logger = logging.getLogger("devhost.eventgrid")

#: Webhook answers Event Grid does not retry (it dead-letters at once).
NO_RETRY = frozenset({400, 401, 403, 404, 413})


@dataclass(frozen=True)
class DeliveryOptions:
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    #: Caps every subscription's maxDeliveryAttempts (tests use a small number).
    max_attempts: int | None = None
    duplicate_probability: float = 0.0
    timeout_seconds: float = 230.0  # the Functions host's own HTTP limit
    seed: int | None = None


@dataclass
class DeliveryRecord:
    """What happened to one event for one subscription (GET /eventgrid/deliveries lists them)."""

    subscription: str
    function: str
    event_id: str
    event_type: str
    attempts: int = 0
    outcome: str = "pending"  # pending | delivered | deadlettered
    last_status: int | None = None
    last_error: str | None = None
    duplicate: bool = False
    finished_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Deliverer:
    base_url: Callable[[], str]
    keys: Callable[[], Sequence[str]]
    deadletter_dir: Path
    options: DeliveryOptions = field(default_factory=DeliveryOptions)
    records: list[DeliveryRecord] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _random: random.Random = field(default_factory=random.Random)

    async def start(self) -> None:
        self._random = random.Random(self.options.seed)  # noqa: S311 - test jitter, not crypto
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.options.timeout_seconds))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def submit(self, subscription: Subscription, event: dict[str, Any]) -> None:
        """Deliver ``event`` to ``subscription`` in the background (once, or twice when duplicating)."""
        copies = 2 if self._random.random() < self.options.duplicate_probability else 1
        for n in range(copies):
            record = DeliveryRecord(
                subscription.name,
                subscription.function,
                str(event.get("id")),
                str(event.get("eventType", event.get("type"))),
                duplicate=n > 0,
            )
            self.records.append(record)
            task = asyncio.get_running_loop().create_task(self._deliver(subscription, event, record))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every delivery so far has succeeded or been dead-lettered (tests)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    async def _deliver(self, subscription: Subscription, event: dict[str, Any], record: DeliveryRecord) -> None:
        policy = subscription.retry_policy
        max_attempts = min(policy.max_delivery_attempts, self.options.max_attempts or policy.max_delivery_attempts)
        expires = time.monotonic() + policy.event_time_to_live_minutes * 60
        while True:
            record.attempts += 1
            status, error = await self._post(subscription, event, record.attempts)
            record.last_status, record.last_error = status, error
            if status is not None and 200 <= status < 300:
                record.outcome = "delivered"
                record.finished_at = datetime.now(UTC).isoformat()
                return
            reason = None
            if status in NO_RETRY:
                reason = "DeliveryFailed"  # Azure dead-letters these without retrying
            elif record.attempts >= max_attempts:
                reason = "MaxDeliveryAttemptsExceeded"
            delay = min(self.options.retry_max_seconds, self.options.retry_base_seconds * 2 ** (record.attempts - 1))
            if reason is None and time.monotonic() + delay > expires:
                reason = "TimeToLiveExceeded"
            if reason is not None:
                self._dead_letter(subscription, event, record, reason)
                return
            logger.info(
                "event %s to %s failed (%s); retry %d in %.2fs",
                record.event_id,
                subscription.function,
                status or error,
                record.attempts + 1,
                delay,
            )
            await asyncio.sleep(delay)

    async def _post(self, subscription: Subscription, event: dict[str, Any], attempt: int) -> tuple[int | None, str]:
        assert self._session is not None, "Deliverer.start() was not awaited"
        url = f"{self.base_url()}/runtime/webhooks/eventgrid"
        headers = {
            "aeg-event-type": "Notification",
            "aeg-subscription-name": subscription.name.upper(),
            "aeg-delivery-count": str(attempt - 1),
            "aeg-data-version": str(event.get("dataVersion", "")),
            "aeg-metadata-version": "1",
            "Content-Type": "application/json",
        }
        keys = self.keys()
        if keys:
            headers["x-functions-key"] = keys[0]
        try:
            async with self._session.post(
                url, params={"functionName": subscription.function}, data=json.dumps([event]), headers=headers
            ) as response:
                body = await response.text()
                return response.status, body[:500]
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def _dead_letter(
        self, subscription: Subscription, event: dict[str, Any], record: DeliveryRecord, reason: str
    ) -> None:
        now = datetime.now(UTC).isoformat()
        letter = {
            **event,
            "deadLetterReason": reason,
            "deliveryAttempts": record.attempts,
            "lastDeliveryOutcome": "Probation" if record.last_status is None else "Aborted",
            "lastHttpStatusCode": record.last_status or 0,
            "lastDeliveryError": record.last_error,
            "publishTime": event.get("eventTime", event.get("time", now)),
            "lastDeliveryAttemptTime": now,
            "subscription": subscription.name,
            "function": subscription.function,
        }
        folder = self.deadletter_dir / subscription.name
        folder.mkdir(parents=True, exist_ok=True)
        safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", record.event_id)[:100] or "event"
        path = folder / f"{safe_id}-{int(time.time() * 1000)}{'-dup' if record.duplicate else ''}.json"
        write_text_atomically(path, json.dumps(letter, indent=2, default=str))
        record.outcome = "deadlettered"
        record.finished_at = now
        logger.warning(
            "event %s to %s dead-lettered after %d attempts (%s): %s",
            record.event_id,
            subscription.function,
            record.attempts,
            reason,
            path,
        )
