"""A small webhook receiver standing in for the Functions host, and a running local Event Grid."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from devhost.eventgrid import DeliveryOptions, LocalEventGrid, load_subscriptions
from devhost.eventgrid.standalone import RunningGrid, StandaloneHost, serve_standalone
from shared.settings import StorageSettings

FAST = DeliveryOptions(retry_base_seconds=0.05, retry_max_seconds=0.5, max_attempts=3, timeout_seconds=10)
TOPIC_KEY = "test-topic-key"


@dataclass
class Delivery:
    function: str
    headers: dict[str, str]
    events: list[dict[str, Any]]
    at: float


@dataclass
class Receiver:
    """Answers POST /runtime/webhooks/eventgrid like a host; ``status`` decides each answer."""

    status: Callable[[str, int], int] = lambda function, n: 200
    deliveries: list[Delivery] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.post("/runtime/webhooks/eventgrid", self._handle)])
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        function = request.query.get("functionName", "")
        self.deliveries.append(
            Delivery(function, dict(request.headers), json.loads(await request.text()), time.monotonic())
        )
        n = sum(1 for d in self.deliveries if d.function == function)
        return web.Response(status=self.status(function, n))

    def events(self, function: str | None = None, contains: str = "") -> list[dict[str, Any]]:
        return [
            e
            for d in self.deliveries
            if function is None or d.function == function
            for e in d.events
            if contains in json.dumps(e)
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> float:
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                raise AssertionError(f"condition not met within {timeout}s; deliveries: {self.deliveries}")
            await asyncio.sleep(0.01)
        return time.monotonic() - start


@asynccontextmanager
async def running_grid(
    state: Path,
    connection_string: str,
    status: Callable[[str, int], int] = lambda function, n: 200,
    options: DeliveryOptions = FAST,
    subscriptions: Any = None,
) -> AsyncIterator[tuple[RunningGrid, Receiver]]:
    receiver = Receiver(status=status)
    await receiver.start()
    grid = LocalEventGrid(
        subscriptions or load_subscriptions(),
        storage=StorageSettings(connection_string, None, None, None, None),
        topic_key=TOPIC_KEY,
        options=options,
        watch_interval=0.1,
    )
    running = await serve_standalone(grid, StandaloneHost(receiver.url, state, ("host-key",)))
    try:
        yield running, receiver
    finally:
        await running.stop()
        await receiver.stop()


@pytest.fixture
def model() -> str:
    return f"m{uuid.uuid4().hex[:12]}"
