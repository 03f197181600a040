"""Run a DevHost on its own event loop in a background thread (for tests, notebooks and the demo).

The Durable SDK keeps one module-level aiohttp session, so every SDK client call must run on
the host's loop: use :meth:`ThreadedHost.call` to run a coroutine there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from devhost.host import DevHost

T = TypeVar("T")


class ThreadedHost:
    def __init__(self, host: DevHost, start_timeout: float = 60.0) -> None:
        self.host = host
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="devhost", daemon=True)
        self._thread.start()
        try:
            self.call(host.start(), timeout=start_timeout)
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            raise

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the host's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def base_url(self) -> str:
        return self.host.base_url

    @property
    def key(self) -> str:
        return self.host.function_keys[0]

    def stop(self) -> None:
        try:
            self.call(self.host.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()
