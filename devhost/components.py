"""The plug-in point for local stand-ins that run inside devhost's server and event loop.

A component (the local Event Grid, the local Azure ML service, …) contributes HTTP routes
to devhost's aiohttp server and gets start/stop calls on devhost's single asyncio loop, so
it can share the loop with the Durable SDK's module-level aiohttp session and read the
host's clock. Enable one in code with ``DevHost.add_component(component)`` or on the command
line with ``--component package.module:factory`` (repeatable); ``factory`` is called with no
arguments and returns the component.

Life cycle: ``routes()`` is read once before the server starts (the routes are mounted on
the same server as ``/api/...``); ``start(host)`` is awaited after the app is loaded and the
server listens (so ``host.base_url`` is valid and the component may call back into it, e.g.
POST ``/runtime/webhooks/eventgrid?functionName=X``); ``stop()`` is awaited on shutdown, in
reverse order of start. A component must not block the loop: run blocking work with
``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from aiohttp import web


@runtime_checkable
class Clock(Protocol):
    """Where devhost reads the time. ``--clock virtual`` replaces it with one that tests move."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return once ``now() >= when`` (on a virtual clock: once someone advances it that far)."""
        ...


@runtime_checkable
class HostView(Protocol):
    """What a component may use of the running host."""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: where the host listens (valid once ``start`` is called)."""
        ...

    @property
    def clock(self) -> Clock:
        """The host's clock: real time, or the virtual clock tests advance."""
        ...

    @property
    def state_dir(self) -> Path:
        """The host's state folder; a component keeps its own files in a sub-folder of it."""
        ...

    @property
    def function_keys(self) -> Sequence[str]:
        """Keys accepted by FUNCTION/ADMIN routes (send one as ``x-functions-key``)."""
        ...

    def function_names(self, trigger_type: str | None = None) -> list[str]:
        """Names of the app's functions, optionally only those with a given trigger type
        (e.g. ``"eventGridTrigger"``, ``"httpTrigger"``, ``"timerTrigger"``)."""
        ...


@runtime_checkable
class Component(Protocol):
    """A local service that runs inside devhost's server and event loop."""

    def routes(self) -> list[web.RouteDef]:
        """Routes to mount on devhost's server (must not collide with ``/api/``, ``/runtime/`` or ``/admin/``)."""
        ...

    async def start(self, host: HostView) -> None:
        """Begin work (background tasks on the running loop); called once the server listens."""
        ...

    async def stop(self) -> None:
        """Cancel background work and release resources; called on host shutdown."""
        ...
