"""The local ML service as a devhost component: ``--component devhost.mlservice.component:component``.

Jobs and endpoints are separate processes that outlive devhost on purpose (as Azure ML resources
outlive a Functions host), so this component only ties their life-cycle to the host's:

- ``start`` brings every endpoint on disk back up (their routers and scoring workers), so a
  restarted ``make demo`` serves the models it had deployed; running jobs need nothing — their
  runners kept going and any ``LocalPlatform`` re-attaches by reading their state;
- ``stop`` stops the endpoint servers (no scoring processes are left behind after the demo) and
  leaves jobs alone;
- ``GET /mlservice/status`` lists jobs and endpoints (a window into the stand-in for people).

The activities reach the same service through ``shared.platform.local.LocalPlatform`` on the same
state folder; nothing here is needed for them to work.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict

from aiohttp import web

from devhost.components import HostView
from shared.platform.local import LocalPlatform
from shared.settings import load_settings


class LocalMLService:
    def __init__(self) -> None:
        self.platform: LocalPlatform | None = None

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/mlservice/status", self._status)]

    async def start(self, host: HostView) -> None:
        # The app's LocalPlatform lives under PERENNIAL_STATE_DIR (local.settings.json is in the environment
        # by now), not under devhost's own --state folder: serve the same endpoints the activities create.
        self.platform = LocalPlatform(load_settings(os.environ).state_dir)
        await asyncio.to_thread(self.platform.resume)

    async def stop(self) -> None:
        if self.platform is not None:
            await asyncio.to_thread(self.platform.stop_endpoints)

    async def _status(self, request: web.Request) -> web.Response:
        if self.platform is None:
            return web.json_response({"error": "the ML service has not started"}, status=503)
        platform = self.platform

        def snapshot() -> dict[str, object]:
            endpoints_dir = platform.layout.root / "endpoints"
            names = sorted(p.name for p in endpoints_dir.iterdir()) if endpoints_dir.exists() else []
            return {
                "state_dir": str(platform.state_dir),
                "jobs": [
                    {"name": j.name, "status": j.status, "phase": j.phase, "error": j.error}
                    for j in platform.list_jobs()
                ],
                "endpoints": [
                    {
                        **asdict(platform.get_endpoint(n).traffic),
                        "name": n,
                        "scoring_uri": platform.get_endpoint(n).scoring_uri,
                    }
                    for n in names
                    if (endpoints_dir / n / "endpoint.json").exists()
                ],
            }

        return web.json_response(await asyncio.to_thread(snapshot))


def component() -> LocalMLService:
    return LocalMLService()
