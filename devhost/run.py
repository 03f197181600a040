"""Run a DevHost until Ctrl-C / SIGTERM, on one event loop, with ``--component module:factory`` plug-ins."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devhost.components import Component
from devhost.errors import ConfigError, DevHostError
from devhost.host import DevHost
from devhost.lifetime import until_orphaned

logger = logging.getLogger("devhost")


@dataclass
class HostOptions:
    app: Path = Path("function_app.py")
    port: int = 7071
    state: Path = Path(".perennial/devhost")
    clock: str = "real"
    settings: Path | None = None
    components: list[str] = field(default_factory=list)
    #: Stop (cleanly) once this process, which started the host, has exited: a launcher killed with
    #: SIGKILL (a test session, `perennial up`) then leaves no host behind.
    parent_pid: int | None = None


def load_component(spec: str) -> Component:
    """``package.module:factory`` → ``factory()``; errors name the spec and the fix."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"--component {spec!r} is not module:factory", "e.g. --component devhost.eventgrid:component")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"--component {spec!r} cannot be loaded: {exc}", "check the module path and factory name"
        ) from None
    component = factory()
    for method in ("routes", "start", "stop"):
        if not callable(getattr(component, method, None)):
            raise ConfigError(
                f"--component {spec!r} returned {type(component).__name__}, which has no {method}()",
                "see devhost/components.py for the Component protocol",
            )
    return component  # type: ignore[no-any-return]


async def serve(options: HostOptions) -> None:
    host = DevHost(options.app, options.port, options.state, options.clock, options.settings)
    for spec in options.components:
        host.add_component(load_component(spec))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_stop_when_orphaned(options.parent_pid, stop)) if options.parent_pid else None
    try:
        await host.start()
        await stop.wait()
        print("devhost: shutting down", flush=True)
    finally:
        if watcher is not None:
            watcher.cancel()
        await host.stop()


async def _stop_when_orphaned(parent: int, stop: asyncio.Event) -> None:
    await until_orphaned(parent)
    print(f"devhost: the process that started it (pid {parent}) has exited", flush=True)
    stop.set()


def run(options: HostOptions) -> int:
    """Blocking entry point shared by ``python -m devhost`` and ``perennial host``; returns an exit code."""
    from shared.logs import configure_logging

    configure_logging(os.environ.get("PERENNIAL_LOG_FORMAT", "text"))
    try:
        asyncio.run(serve(options))
    except DevHostError as exc:
        print(f"devhost: {exc.message}\n  fix: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
