"""The local Event Grid: a devhost component (routes / start / stop) wiring topics to functions.

- storage topics: a :class:`BlobWatcher` on the container turns new or overwritten blobs
  into ``Microsoft.Storage.BlobCreated`` events
- custom topics: ``POST /eventgrid/topics/<name>/api/events`` accepts what the real
  ``EventGridPublisherClient`` sends (Event Grid schema or CloudEvents, ``aeg-sas-key`` auth);
  point ``PERENNIAL_EVENTGRID_ENDPOINT`` at it, with ``PERENNIAL_EVENTGRID_KEY`` as the key
- every event is matched against the subscriptions file and handed to the
  :class:`Deliverer` (retries, backoff, dead letters, optional duplicates)
- ``GET /eventgrid/deliveries`` lists what happened to each delivery (for people and tests)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.storage.blob import ExponentialRetry

from devhost.components import HostView
from devhost.errors import ConfigError
from devhost.eventgrid.delivery import Deliverer, DeliveryOptions
from devhost.eventgrid.subscriptions import DEFAULT_FILE, SubscriptionsFile, load_subscriptions
from devhost.eventgrid.watcher import LOCAL_SUBSCRIPTION, BlobWatcher
from devhost.eventgrid_webhook import undecodable
from devhost.files import write_text_atomically
from devhost.keys import key_matches
from shared.settings import StorageSettings, load_settings
from shared.storage import blob_service_client

logger = logging.getLogger("devhost.eventgrid")

#: Azure's limit on one publish request.
MAX_BATCH_BYTES = 1024 * 1024
_REQUIRED_EG = {"id": str, "subject": str, "eventType": str, "eventTime": str, "dataVersion": str}
_REQUIRED_CE = {"id": str, "source": str, "type": str, "specversion": str}


def _error(status: int, code: str, message: str) -> web.Response:
    """Event Grid's own error shape, which azure-core turns into HttpResponseError.message."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _invalid(event: Any, index: int) -> str | None:
    if not isinstance(event, dict):
        return f"event [{index}] must be a JSON object"
    required = _REQUIRED_CE if "specversion" in event else _REQUIRED_EG
    for name, kind in required.items():
        if not isinstance(event.get(name), kind):
            return f"event [{index}] ({event.get('id', '?')!r}): {name} is required and must be a string"
    if "specversion" not in event and "data" not in event:
        return f"event [{index}] ({event.get('id')!r}): data is required"
    # Azure's topic accepts a time the Python worker cannot read (e.g. a +01:00 offset) and the delivery then fails
    # until it dead-letters; devhost refuses it here so the problem shows where it starts (docs/events.md).
    if (reason := undecodable(event)) is not None:
        return f"event [{index}]: {reason}"
    return None


class LocalEventGrid:
    """Topics, subscriptions and delivery, running on devhost's loop (or standalone)."""

    def __init__(
        self,
        subscriptions: SubscriptionsFile | str | Path | None = None,
        *,
        storage: StorageSettings | None = None,
        topic_key: str | None = None,
        options: DeliveryOptions | None = None,
        watch_interval: float = 0.25,
    ) -> None:
        self._subscriptions_source = subscriptions
        self.subscriptions: SubscriptionsFile | None = (
            subscriptions if isinstance(subscriptions, SubscriptionsFile) else None
        )
        self._storage = storage
        self._topic_key = topic_key
        self.options = options or DeliveryOptions()
        self.watch_interval = watch_interval
        self.watchers: list[BlobWatcher] = []
        self.deliverer: Deliverer | None = None
        self.host: HostView | None = None
        self.topic_key = ""
        #: Where this grid's own routes are served: devhost's URL, unless run standalone on its own port.
        self.own_url: str | None = None

    # ----------------------------------------------------------------- Component protocol

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/eventgrid/topics/{topic}/api/events", self._handle_publish),
            web.get("/eventgrid/deliveries", self._handle_deliveries),
        ]

    async def start(self, host: HostView) -> None:
        self.host = host
        if self.subscriptions is None:
            source = self._subscriptions_source or os.environ.get("PERENNIAL_EVENTGRID_SUBSCRIPTIONS") or DEFAULT_FILE
            self.subscriptions = load_subscriptions(source)  # type: ignore[arg-type]
        state = host.state_dir / "eventgrid"
        state.mkdir(parents=True, exist_ok=True)
        self.topic_key = self._topic_key or os.environ.get("PERENNIAL_EVENTGRID_KEY") or self._stored_key(state)
        self.deliverer = Deliverer(lambda: host.base_url, lambda: host.function_keys, self.deadletter_dir, self.options)
        await self.deliverer.start()
        known = host.function_names("eventGridTrigger")
        for sub in self.subscriptions.subscriptions:
            if known and sub.function not in known:
                logger.warning(
                    "subscription %s targets %s, which is not an Event Grid function of this app (%s)",
                    sub.name,
                    sub.function,
                    ", ".join(known),
                )
        storage_topics = [t for t in self.subscriptions.topics if t.kind == "storage"]
        if storage_topics:
            storage = self._storage or load_settings().storage
            # No retries of a refused connection: the watchers poll several times a second, which is
            # retry enough, and a host started without Azurite should say so at once. Two quick status
            # retries (about 3 and 5 s, not the SDK's default 18 and 24 s) so a busy Azurite does not
            # hold a poll for half a minute.
            quick = ExponentialRetry(
                initial_backoff=1, increment_base=2, random_jitter_range=1, retry_total=2, retry_connect=0
            )
            service = blob_service_client(storage, retry_policy=quick)
            for topic in storage_topics:
                watcher = BlobWatcher(
                    service=service,
                    container=topic.container,
                    emit=self._emitter(topic.name),
                    state_file=state / f"watcher-{topic.name}.json",
                    now=host.clock.now,
                    interval=self.watch_interval,
                )
                try:
                    await watcher.start()
                except (ServiceRequestError, ServiceResponseError) as exc:
                    await self.stop()  # what started so far (the deliverer's session, earlier watchers)
                    raise ConfigError(
                        f"the local Event Grid cannot watch container {topic.container!r}: storage cannot be "
                        f"reached ({str(exc).splitlines()[0]})",
                        "start Azurite first (`perennial up` starts Azurite, the containers and the host together), "
                        "or point AzureWebJobsStorage at a running account",
                    ) from None
                self.watchers.append(watcher)
        logger.info(
            "local Event Grid: %d subscriptions; custom topics at %s/eventgrid/topics/<topic>/api/events",
            len(self.subscriptions.subscriptions),
            self.own_url or host.base_url,
        )

    async def stop(self) -> None:
        for watcher in self.watchers:
            await watcher.stop()
        self.watchers.clear()
        if self.deliverer is not None:
            await self.deliverer.stop()

    # ----------------------------------------------------------------- routing

    @property
    def deadletter_dir(self) -> Path:
        if self.host is None:
            raise RuntimeError("the local Event Grid has not started")
        return self.host.state_dir / "eventgrid" / "deadletter"

    def topic_endpoint(self, topic: str) -> str:
        """The URL to give EventGridPublisherClient (``PERENNIAL_EVENTGRID_ENDPOINT``)."""
        if self.host is None:
            raise RuntimeError("the local Event Grid has not started")
        return f"{self.own_url or self.host.base_url}/eventgrid/topics/{topic}/api/events"

    def route(self, topic: str, event: dict[str, Any]) -> int:
        """Hand ``event`` to every matching subscription of ``topic``; returns how many matched."""
        if self.subscriptions is None or self.deliverer is None:
            raise RuntimeError("the local Event Grid has not started")
        matched = self.subscriptions.matching(topic, event)
        for sub in matched:
            self.deliverer.submit(sub, event)
        if not matched:
            logger.debug("event %s on topic %s matched no subscription", event.get("id"), topic)
        return len(matched)

    def _emitter(self, topic: str) -> Callable[[dict[str, Any]], None]:
        def emit(event: dict[str, Any]) -> None:
            self.route(topic, event)

        return emit

    def publish(self, topic: str, events: Sequence[dict[str, Any]]) -> None:
        """In-process publishing (no HTTP, no key) for tests and other components."""
        for event in events:
            self.route(topic, self._stamp(topic, event))

    def _stamp(self, topic: str, event: dict[str, Any]) -> dict[str, Any]:
        if "specversion" in event:
            return dict(event)
        resource = (
            f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/local/providers/Microsoft.EventGrid/topics/{topic}"
        )
        return {**event, "topic": resource, "metadataVersion": "1"}

    # ----------------------------------------------------------------- HTTP

    async def _handle_publish(self, request: web.Request) -> web.Response:
        topic_name = request.match_info["topic"]
        topic = self.subscriptions.topic(topic_name) if self.subscriptions else None
        if topic is None or topic.kind != "custom":
            return _error(404, "NotFound", f"no custom topic {topic_name!r}; see devhost/eventgrid/subscriptions.json")
        if not key_matches(request.headers.get("aeg-sas-key"), [self.topic_key]):  # bytes: any header text compares
            return _error(
                401,
                "Unauthorized",
                "the aeg-sas-key header is missing or wrong: use PERENNIAL_EVENTGRID_KEY (AzureKeyCredential)",
            )
        body = await request.read()
        if len(body) > MAX_BATCH_BYTES:
            return _error(413, "RequestEntityTooLarge", f"the batch is {len(body)} bytes; the limit is 1 MB")
        try:
            events = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            return _error(400, "BadRequest", "the body is not JSON: send an array of events")
        if not isinstance(events, list) or not events:
            return _error(400, "BadRequest", "the body must be a non-empty JSON array of events")
        for index, event in enumerate(events):
            problem = _invalid(event, index)
            if problem:
                return _error(400, "BadRequest", problem)
        self.publish(topic_name, events)
        return web.Response(status=200)

    async def _handle_deliveries(self, request: web.Request) -> web.Response:
        """Every delivery and its outcome, for the topic's key (aeg-sas-key) or one of devhost's function keys
        (x-functions-key): the events carry the app's data."""
        function_keys = list(self.host.function_keys) if self.host is not None else []
        if not (
            key_matches(request.headers.get("aeg-sas-key"), [self.topic_key])
            or key_matches(request.headers.get("x-functions-key"), function_keys)
        ):
            return _error(401, "Unauthorized", "send the topic's aeg-sas-key or a function key (x-functions-key)")
        records = self.deliverer.records if self.deliverer else []
        return web.json_response([r.to_dict() for r in records])

    @staticmethod
    def _stored_key(state: Path) -> str:
        """A topic key generated once per state folder (the local stand-in for the topic's access key)."""
        path = state / "topic-key"
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        key = secrets.token_urlsafe(32)
        write_text_atomically(path, key, mode=0o600)
        return key
