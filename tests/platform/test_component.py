"""The devhost component: endpoints come back when devhost starts and stop when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from devhost.components import Clock, Component
from devhost.mlservice.component import component
from shared.platform import (
    ComputeSpec,
    DeploymentSpec,
    EndpointSpec,
    InvokeRequest,
    ModelRegistration,
    Traffic,
    TrafficUpdate,
)
from shared.platform.local import LocalPlatform
from tests.azurite import free_port
from tests.platform.conftest import HERE, Harness, cleanup_local


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        await asyncio.sleep(max(0.0, (when - self.now()).total_seconds()))


class _Host:
    def __init__(self, state_dir: Path, port: int) -> None:
        self._state_dir, self._port = state_dir, port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def clock(self) -> Clock:
        return _Clock()

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def function_keys(self) -> Sequence[str]:
        return ()

    def function_names(self, trigger_type: str | None = None) -> list[str]:
        return []


def test_component_resumes_endpoints_and_stops_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    # The component serves the app's platform state (PERENNIAL_STATE_DIR), not devhost's --state folder.
    monkeypatch.setenv("PERENNIAL_STATE_DIR", str(state))
    platform = LocalPlatform(state, code_root=HERE)
    try:
        h = Harness("local", platform, tmp_path)
        platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=1))
        platform.submit_job(h.job_spec("train-1", gated=False))
        assert h.wait("train-1").status == "Completed"
        version = platform.register_model(ModelRegistration("fraud", "train-1")).version
        platform.ensure_endpoint(EndpointSpec("fraud-ep"))
        platform.create_or_update_deployment(DeploymentSpec("fraud-ep", "blue", "fraud", version, code="fixtures"))
        platform.set_traffic(TrafficUpdate("fraud-ep", Traffic({"blue": 100})))
        platform.stop_endpoints()  # devhost was down

        service = component()
        assert isinstance(service, Component)
        port = free_port()

        async def scenario() -> dict[str, object]:
            app = web.Application()
            app.add_routes(service.routes())
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                await service.start(_Host(tmp_path / "devhost", port))
                assert await asyncio.to_thread(platform._router_port, "fraud-ep") is not None  # serving again
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{port}/mlservice/status") as r,
                ):
                    status: dict[str, object] = await r.json()
                await service.stop()
                return status
            finally:
                await runner.cleanup()

        status = asyncio.run(scenario())
        assert status["jobs"] == [{"name": "train-1", "status": "Completed", "phase": "completed", "error": None}]
        endpoints = status["endpoints"]
        assert isinstance(endpoints, list)
        assert endpoints[0]["name"] == "fraud-ep"
        assert endpoints[0]["live"] == {"blue": 100}
        assert platform._router_port("fraud-ep") is None  # stop() stopped the server
        assert platform.invoke(InvokeRequest("fraud-ep", {"data": [{"amount": 1.0}]})).status_code == 200
    finally:
        cleanup_local(platform)
