"""Fixtures: devhost serving small dedicated apps from tests/fixtures on free loopback ports."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.durable_functions as df
import httpx
import pytest

from devhost.clock import VirtualClock
from devhost.host import DevHost
from devhost.threaded import ThreadedHost

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
TERMINAL = {"Completed", "Failed", "Terminated"}


class Harness:
    """A running host plus the two clients a user has: plain HTTP and the SDK's DurableOrchestrationClient."""

    def __init__(self, threaded: ThreadedHost) -> None:
        self.threaded = threaded
        self.host = threaded.host
        self.http = httpx.Client(base_url=threaded.base_url, timeout=60)

    @property
    def key(self) -> str:
        return self.threaded.key

    @property
    def app(self) -> ModuleType:
        return sys.modules[self.host.app_path.stem]

    def sdk(self) -> df.DurableOrchestrationClient:
        return df.DurableOrchestrationClient(self.host.client_binding_json())

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run an SDK coroutine on the host's loop (the SDK's aiohttp session lives there)."""
        return self.threaded.call(coro, timeout)

    def start(self, name: str, payload: Any = None, instance_id: str | None = None) -> str:
        return str(self.call(self.sdk().start_new(name, instance_id, payload)))

    def status(self, instance_id: str, history: bool = False) -> Any:
        return self.call(self.sdk().get_status(instance_id, show_history=history, show_history_output=history))

    def advance(self, seconds: float) -> dict[str, Any]:
        response = self.http.post("/admin/clock", json={"advance_seconds": seconds})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, instance_id: str, timeout: float = 30, advance: float | None = None) -> Any:
        """Wait for a terminal status; with ``advance``, move the virtual clock that far each round."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(instance_id)
            if status.runtime_status and status.runtime_status.value in TERMINAL:
                return status
            if advance is not None:
                self.advance(advance)
            else:
                time.sleep(0.02)
        raise AssertionError(
            f"instance {instance_id} did not finish in {timeout}s: {self.status(instance_id).to_json()}"
        )

    def idle(self) -> None:
        assert self.call(self.host.engine.wait_idle(30)) if self.host.engine else True

    def on_loop(self, fn: Any) -> Any:
        """Run a plain callable on the host's loop thread (the SQLite store belongs to that thread)."""

        async def run() -> Any:
            return fn()

        return self.call(run())

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        engine = self.host.engine
        assert engine is not None
        return list(self.on_loop(lambda: engine.history_events(instance_id)))

    def close(self) -> None:
        self.http.close()
        self.threaded.stop()


def start_harness(app: Path, state: Path, clock: Any = "real", **kwargs: Any) -> Harness:
    return Harness(ThreadedHost(DevHost(app, port=0, state_dir=state, clock=clock, **kwargs)))


@pytest.fixture(scope="module")
def patterns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """patterns_app on a virtual clock (tests move it with POST /admin/clock)."""
    harness = start_harness(FIXTURES / "patterns_app.py", tmp_path_factory.mktemp("patterns"), VirtualClock())
    try:
        yield harness
    finally:
        harness.close()


def event_types(history: list[dict[str, Any]]) -> list[int]:
    return [int(e["EventType"]) for e in history]


def dumps(value: Any) -> str:
    return json.dumps(value)
