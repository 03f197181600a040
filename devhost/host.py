"""DevHost: one aiohttp server and one asyncio loop serving a Functions app at the host's URLs.

Start-up follows Core Tools: ``local.settings.json`` Values go into the environment (without
overriding what is set), then the app is imported and ``get_functions()`` is called once,
then the routes are printed. Components (:mod:`devhost.components`) add their routes to the
same server and run on the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from devhost import eventgrid_webhook, http_routes
from devhost.app_loader import AppFunction, FunctionIndex, load_app
from devhost.clock import RealClock, VirtualClock
from devhost.components import Clock, Component
from devhost.durable.api import ManagementApi, client_binding
from devhost.durable.engine import Engine
from devhost.errors import ConfigError
from devhost.invoke import Invoker
from devhost.keys import load_or_create_keys
from devhost.timers import TimerRunner
from shared.settings import apply_local_settings

logger = logging.getLogger("devhost")


def _route_prefix(app_dir: Path) -> str:
    with contextlib.suppress(OSError, json.JSONDecodeError, AttributeError):
        document = json.loads((app_dir / "host.json").read_text(encoding="utf-8"))
        prefix = document.get("extensions", {}).get("http", {}).get("routePrefix")
        if isinstance(prefix, str):
            return prefix.strip("/")
    return "api"


class DevHost:
    """The local host. ``await start()`` loads the app and listens; ``await stop()`` shuts everything down."""

    def __init__(
        self,
        app_path: str | Path = "function_app.py",
        port: int = 7071,
        state_dir: str | Path = ".perennial/devhost",
        clock: str | Clock = "real",
        settings_path: str | Path | None = None,
        activity_workers: int = 8,
    ) -> None:
        self.app_path = Path(app_path).resolve()
        self.port = port
        self._state_dir = Path(state_dir).resolve()
        if isinstance(clock, str):
            if clock not in ("real", "virtual"):
                raise ConfigError(f"--clock {clock!r} is not supported", "use --clock real or --clock virtual")
            self._clock: Clock = (
                VirtualClock.persistent(self._state_dir / "virtual-clock.txt") if clock == "virtual" else RealClock()
            )
        else:
            self._clock = clock
        self.settings_path = Path(settings_path) if settings_path else self.app_path.parent / "local.settings.json"
        self.activity_workers = activity_workers
        self.components: list[Component] = []
        self.index: FunctionIndex | None = None
        self.engine: Engine | None = None
        self._keys: list[str] = []
        self._runner: web.AppRunner | None = None
        self._timers: TimerRunner | None = None
        self._invoker = Invoker(activity_workers)
        self._started: list[Component] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- HostView (what components see) ------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def function_keys(self) -> Sequence[str]:
        return tuple(self._keys)

    def function_names(self, trigger_type: str | None = None) -> list[str]:
        if self.index is None:
            return []
        return [f.name for f in self.index.functions if trigger_type is None or f.trigger_type == trigger_type]

    def add_component(self, component: Component) -> None:
        """Mount a component's routes on this server and run it on this loop (call before ``start``)."""
        if self._runner is not None:
            raise ConfigError("add_component() was called after start()", "add components before starting the host")
        self.components.append(component)

    # -- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        apply_local_settings(self.settings_path)
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self._keys, key_origin = load_or_create_keys(self._state_dir)
        self.index = load_app(self.app_path)
        self._timers = TimerRunner(self.index.timers, self._clock, self._state_dir, self._invoke_plain)
        self.engine = Engine(self.index, self._state_dir, self._clock, self.activity_workers)
        app = web.Application(client_max_size=100 * 1024 * 1024)  # the Functions host's own limit: 100 MB
        prefix = _route_prefix(self.app_path.parent)
        http_handler = http_routes.make_handler(
            http_routes.build_routes(self.index.http), lambda: self._keys, self._invoke_request
        )
        eg_handler = eventgrid_webhook.make_handler(lambda: self._eventgrid, lambda: self._keys, self._invoke_request)
        app.add_routes(
            [
                web.post("/runtime/webhooks/eventgrid", eg_handler),
                web.options("/runtime/webhooks/eventgrid", eg_handler),
                web.get("/admin/clock", self._get_clock),
                web.post("/admin/clock", self._post_clock),
                web.get("/admin/host/status", self._host_status),
                *ManagementApi(self.engine, lambda: self.base_url, lambda: self._keys).routes(),
            ]
        )
        for component in self.components:
            app.add_routes(component.routes())
        # The HTTP trigger catch-all goes last so it never shadows /runtime, /admin or a component. Case-blind like
        # the Functions host's routing (/API/MODELS is /api/models), and its tail may hold a %0A: the route answers.
        tail = "{tail:(?s:.*)}"
        catch_all = f"/{{_prefix:(?i:{re.escape(prefix)})}}/{tail}" if prefix else f"/{tail}"
        app.add_routes([web.route("*", catch_all, http_handler)])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = _bind(self.port)
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        await self.engine.start()
        for component in self.components:
            await component.start(self)
            self._started.append(component)
        self._timers.start()
        self._print_banner(prefix, key_origin)

    async def stop(self) -> None:
        if self._timers is not None:
            await self._timers.stop()
        for component in reversed(self._started):
            try:
                await component.stop()
            except Exception:
                logger.exception("component %r failed to stop", component)
        self._started.clear()
        if self.engine is not None:
            await self.engine.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        self._invoker.shutdown()
        await _close_sdk_session()

    # -- invocation --------------------------------------------------------------------------
    @property
    def _eventgrid(self) -> dict[str, AppFunction]:
        return self.index.eventgrid if self.index else {}

    def client_binding_json(self) -> str:
        assert self.index is not None
        return json.dumps(client_binding(self.base_url, self.index.task_hub, self._keys[0]))

    async def _invoke_plain(self, fn: AppFunction, arguments: dict[str, Any]) -> Any:
        if fn.durable_client_arg:
            arguments = {**arguments, fn.durable_client_arg: self.client_binding_json()}
        return await self._invoker.call(fn, arguments, str(self.app_path.parent))

    async def _invoke_request(self, fn: AppFunction, arguments: dict[str, Any], request: web.Request) -> Any:
        return await self._invoke_plain(fn, arguments)

    # -- admin ---------------------------------------------------------------------------------
    def _loopback(self, request: web.Request) -> bool:
        return (request.remote or "") in ("127.0.0.1", "::1")

    async def _get_clock(self, request: web.Request) -> web.Response:
        if not self._loopback(request):
            return web.Response(status=403)
        return web.json_response(
            {"now": self._clock.now().astimezone(UTC).isoformat(), "virtual": isinstance(self._clock, VirtualClock)}
        )

    async def _post_clock(self, request: web.Request) -> web.Response:
        if not self._loopback(request):
            return web.Response(status=403)
        if not isinstance(self._clock, VirtualClock):
            return http_routes.problem(409, "Conflict", "the clock is real: start devhost with --clock virtual")
        try:
            body = await request.json()
            if "advance_seconds" in body:
                self._clock.advance(float(body["advance_seconds"]))
            elif "set" in body:
                self._clock.set(datetime.fromisoformat(str(body["set"])))
            else:
                raise ValueError("send {'advance_seconds': N} or {'set': ISO-8601 time}")
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            return http_routes.problem(400, "Bad Request", str(exc))
        # Let the work that just became due run before answering, so tests can step deterministically.
        idle = await self.engine.wait_idle(float(body.get("wait_seconds", 30))) if self.engine else True
        return web.json_response({"now": self._clock.now().isoformat(), "idle": idle})

    async def _host_status(self, request: web.Request) -> web.Response:
        return web.json_response({"state": "Running", "functions": self.function_names()})

    def _print_banner(self, prefix: str, key_origin: str) -> None:
        assert self.index is not None
        lines = [
            "",
            f"devhost: serving {self.app_path.name} at {self.base_url} (state: {self._state_dir})",
            "",
            "Functions:",
            "",
        ]
        for fn in self.index.functions:
            if fn.trigger_type == "httpTrigger":
                methods = ",".join(fn.methods) or "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS"
                route = f"/{prefix}/{fn.route}" if prefix else f"/{fn.route}"
                lines.append(f"        {fn.name}: [{methods}] {self.base_url}{route}")
            elif fn.trigger_type == "eventGridTrigger":
                lines.append(
                    f"        {fn.name}: eventGridTrigger {self.base_url}/runtime/webhooks/eventgrid?functionName={fn.name}"
                )
            elif fn.trigger_type == "timerTrigger":
                lines.append(f"        {fn.name}: timerTrigger ({getattr(fn.trigger, 'schedule', '')})")
            else:
                lines.append(f"        {fn.name}: {fn.trigger_type}")
        for fn in self.index.unserved:
            lines.append(f"        (not served by devhost: {fn.name}, {fn.trigger_type})")
        lines += [
            "",
            f"Function key ({key_origin}): {self._keys[0]}",
        ]
        lines += [
            f"Clock: {'virtual (POST /admin/clock to move it)' if isinstance(self._clock, VirtualClock) else 'real'}",
            "",
        ]
        print("\n".join(lines), flush=True)


async def _close_sdk_session() -> None:
    """The Durable SDK keeps one module-level aiohttp session; close it with the loop that owns it."""
    with contextlib.suppress(Exception):
        from azure.durable_functions.models.utils import http_utils

        await http_utils._close_session()


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", "pick another --port, or stop what uses it"
        ) from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock
