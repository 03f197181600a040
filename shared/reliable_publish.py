"""Outbound events that survive an Event Grid outage: what the topic refuses waits in storage and goes out later.

A run that has done its work must not fail because the topic is unreachable (the registry already holds the
outcome), and subscribers must still hear of it. So :class:`ReliablePublisher` publishes as usual and, when the
topic refuses, keeps each event as ``manifests/<model>/unsent/<hash of its id>.json``; the housekeeping timer
calls :meth:`ReliablePublisher.send_unsent` every ten minutes. Unsent events go out with their original id and time,
oldest first, so a subscriber that drops repeated ids (as Event Grid's at-least-once delivery asks of every
subscriber) sees each event once. An event the topic refuses as such (400, 413: sending it again cannot help) is
moved to ``deadletter/<model>/events/`` with the answer, and the events behind it still go out.

When storage cannot keep the event either, :meth:`ReliablePublisher.publish` raises the topic's error, as a plain
publisher would: the caller (an activity) is retried, and nothing is lost silently.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.publish import EventPublisher, OutboundEvent, PublishError
from shared.storage import DEADLETTER, MANIFESTS, BlobMissingError, BlobStore

logger = logging.getLogger("perennial.publish")

UNSENT_FOLDER = "unsent"
DEADLETTER_FOLDER = "events"


@dataclass(frozen=True)
class UnsentReport:
    """What one :meth:`ReliablePublisher.send_unsent` did for a model."""

    sent: int = 0
    dead_lettered: int = 0
    left: int = 0
    error: str | None = None  # why the unsent events that are left could not go out (the topic's answer)


def _key(event_id: str) -> str:
    # Event ids carry ':' and eTags' quotes; a hash makes a safe, fixed-length name, the same each time one event is kept.
    return hashlib.sha256(event_id.encode()).hexdigest()[:40]


def unsent_name(event: OutboundEvent) -> str:
    return f"{_model_of(event)}/{UNSENT_FOLDER}/{_key(event.id)}.json"


def _model_of(event: OutboundEvent) -> str:
    return str(event.data["model"])  # every Perennial event names its model (shared.publish.EventData)


class ReliablePublisher:
    """An :class:`EventPublisher` that keeps what the topic refuses and sends it later (see the module doc)."""

    def __init__(self, inner: EventPublisher, store: BlobStore) -> None:
        self.inner = inner
        self.store = store

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        try:
            self.inner.publish(events)
        except PublishError as exc:
            try:
                kept_at = datetime.now(UTC).isoformat()
                for event in events:
                    document = {"event": event.to_dict(), "kept_at": kept_at, "error": str(exc)}
                    self.store.put_json(MANIFESTS, unsent_name(event), document)
            except Exception as keep_error:
                logger.error("could not keep %d refused event(s) in storage either: %s", len(events), keep_error)
                raise exc from keep_error
            logger.warning(
                "the event topic refused %d event(s) (%s); they are kept in %s/<model>/%s/ and the housekeeping "
                "timer sends them when the topic answers again",
                len(events),
                exc,
                MANIFESTS,
                UNSENT_FOLDER,
            )

    def unsent_count(self, model: str) -> int:
        """How many of the model's events wait to be sent (what ``GET /api/models`` reports)."""
        return len(self.store.names(MANIFESTS, model, UNSENT_FOLDER))

    def refused_count(self, model: str) -> int:
        """How many of the model's events the topic refused for good: they sit in ``deadletter/<model>/events/``
        with the topic's answer, and no subscriber heard of them (``GET /api/models`` reports this too)."""
        return len(self.store.names(DEADLETTER, model, DEADLETTER_FOLDER))

    def send_unsent(self, model: str) -> UnsentReport:
        """Send the model's unsent events, oldest first; stop at the first one the topic cannot take now."""
        unsent: list[tuple[str, OutboundEvent]] = []
        for name in self.store.names(MANIFESTS, model, UNSENT_FOLDER):
            try:
                document: dict[str, Any] = self.store.get_json(MANIFESTS, name)
                unsent.append((name, OutboundEvent.from_dict(document["event"])))
            except BlobMissingError:
                continue  # sent by a concurrent tick
            except (KeyError, TypeError, ValueError) as exc:  # not ours to guess at: left where it is, and said
                logger.error("%s/%s is not a kept event (%s); the others still go out", MANIFESTS, name, exc)
        unsent.sort(key=lambda item: (item[1].event_time, item[1].id))
        sent = dead = 0
        for i, (name, event) in enumerate(unsent):
            try:
                self.inner.publish([event])
            except PublishError as exc:
                if not exc.permanent:
                    return UnsentReport(sent=sent, dead_lettered=dead, left=len(unsent) - i, error=str(exc))
                document = {"event": event.to_dict(), "refused_at": datetime.now(UTC).isoformat(), "error": str(exc)}
                self.store.put_json(DEADLETTER, f"{model}/{DEADLETTER_FOLDER}/{_key(event.id)}.json", document)
                logger.error(
                    "the event topic refused %s %s for good (%s); moved to %s",
                    event.event_type,
                    event.id,
                    exc,
                    DEADLETTER,
                )
                dead += 1
            else:
                sent += 1
            self.store.delete(MANIFESTS, name)
        return UnsentReport(sent=sent, dead_lettered=dead)
