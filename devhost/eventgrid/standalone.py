"""Run the local Event Grid on its own aiohttp server, delivering to a host at another URL.

devhost normally mounts the component on its own server; this is for running it beside
another host (Core Tools' ``func start``), and for tests with a small receiver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from devhost.clock import RealClock
from devhost.components import Clock
from devhost.eventgrid.grid import LocalEventGrid


@dataclass
class StandaloneHost:
    """A HostView for a Functions host reached over HTTP (``base_url``) rather than in-process."""

    base_url: str
    state_dir: Path
    function_keys: Sequence[str] = ()
    clock: Clock = field(default_factory=RealClock)

    def function_names(self, trigger_type: str | None = None) -> list[str]:
        return []  # unknown from outside the host: the subscriptions file is trusted


@dataclass
class RunningGrid:
    grid: LocalEventGrid
    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.grid.stop()
        await self.runner.cleanup()


async def serve_standalone(grid: LocalEventGrid, host: StandaloneHost, port: int = 0) -> RunningGrid:
    """Serve ``grid``'s routes on 127.0.0.1:``port`` (0 = a free one) and start it against ``host``."""
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app.add_routes(grid.routes())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server: Any = site._server  # aiohttp exposes the bound port only through the asyncio server
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    grid.own_url = f"http://127.0.0.1:{bound}"
    try:
        await grid.start(host)
    except BaseException:
        await runner.cleanup()
        raise
    return RunningGrid(grid, runner, bound)
