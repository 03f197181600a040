"""Components, function keys, timers after downtime, NCRONTAB parsing and CLI errors."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devhost.clock import VirtualClock
from devhost.components import Component, HostView
from devhost.cron import CronError, Schedule
from devhost.errors import ConfigError
from devhost.keys import KEY_FILE, load_or_create_keys
from devhost.run import load_component
from tests.devhost.conftest import FIXTURES, start_harness


class EchoComponent:
    """A component that serves a route and, once started, calls back into the host over HTTP."""

    def __init__(self) -> None:
        self.host: HostView | None = None
        self.stopped = False
        self.callback_status: int | None = None

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/echo-component/now", self.now)]

    async def now(self, request: web.Request) -> web.Response:
        assert self.host is not None
        return web.json_response(
            {"now": self.host.clock.now().isoformat(), "functions": self.host.function_names("eventGridTrigger")}
        )

    async def start(self, host: HostView) -> None:
        self.host = host
        # Same loop, same server: deliver an Event Grid event the way the local Event Grid will.
        event = {
            "id": "c1",
            "subject": "s",
            "eventType": "T",
            "eventTime": "2026-01-01T00:00:00Z",
            "data": {},
            "dataVersion": "1",
        }
        async with aiohttp.ClientSession() as session:
            url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=on_event"
            headers = {"aeg-event-type": "Notification", "x-functions-key": host.function_keys[0]}
            async with session.post(url, json=[event], headers=headers) as response:
                self.callback_status = response.status

    async def stop(self) -> None:
        self.stopped = True


def make_component() -> EchoComponent:
    return EchoComponent()


def test_component_routes_start_and_stop_share_the_host(tmp_path: Path) -> None:
    component = EchoComponent()
    assert isinstance(component, Component)
    clock = VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))
    from devhost.host import DevHost
    from devhost.threaded import ThreadedHost

    host = DevHost(FIXTURES / "patterns_app.py", port=0, state_dir=tmp_path, clock=clock)
    host.add_component(component)
    threaded = ThreadedHost(host)
    try:
        assert component.callback_status == 200
        import httpx

        body = httpx.get(f"{host.base_url}/echo-component/now").json()
        assert body == {"now": "2030-01-01T00:00:00+00:00", "functions": ["on_event"]}
        with pytest.raises(ConfigError, match="after start"):
            host.add_component(EchoComponent())
    finally:
        threaded.stop()
    assert component.stopped


def test_component_specs_load_or_say_what_is_wrong() -> None:
    assert isinstance(load_component("tests.devhost.test_host_features:make_component"), EchoComponent)
    with pytest.raises(ConfigError, match="module:factory"):
        load_component("no-colon")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_component("tests.devhost.test_host_features:missing")
    with pytest.raises(ConfigError, match="no routes"):
        load_component("builtins:object")


def test_function_keys_come_from_settings_or_one_stable_generated_key(tmp_path: Path) -> None:
    setting = load_or_create_keys(tmp_path, {"DEVHOST_FUNCTION_KEYS": "a, b"})
    assert setting == (["a", "b"], "from the DEVHOST_FUNCTION_KEYS setting")
    generated, origin = load_or_create_keys(tmp_path, {})
    assert origin == f"generated, stored in {tmp_path / KEY_FILE}"
    assert (tmp_path / KEY_FILE).read_text().strip() == generated[0]
    # The same key on the next start, and the banner says where it was read from.
    assert load_or_create_keys(tmp_path, {}) == (generated, f"stored in {tmp_path / KEY_FILE}")


def _wait_for(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_timer_missed_while_down_runs_once_with_past_due(tmp_path: Path) -> None:
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    # The last run was an hour ago: occurrences were missed while the host was down.
    (tmp_path / "timers.json").write_text(json.dumps({"every_five_minutes": "2030-01-01T11:00:00.000000Z"}))
    harness = start_harness(FIXTURES / "timer_app.py", tmp_path, VirtualClock(start))
    try:
        ticks = harness.app.TICKS
        _wait_for(lambda: len(ticks) == 1)
        assert ticks[0] == {"past_due": True, "last": "2030-01-01T11:00:00.000000Z"}
        harness.advance(5 * 60)  # exactly the 12:05 occurrence: on time
        _wait_for(lambda: len(ticks) == 2)
        assert ticks[1]["past_due"] is False
        _wait_for(
            lambda: json.loads((tmp_path / "timers.json").read_text())["every_five_minutes"] >= "2030-01-01T12:05"
        )
    finally:
        harness.close()


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", "2030-01-01T00:03:07", "2030-01-01T00:05:00"),
        ("0 0 9 * * Mon-Fri", "2030-01-04T10:00:00", "2030-01-07T09:00:00"),  # Friday 10:00 -> Monday 09:00
        ("*/10 * * * * *", "2030-01-01T00:00:05", "2030-01-01T00:00:10"),
        ("0 30 2 1 Jan *", "2030-01-01T03:00:00", "2031-01-01T02:30:00"),
        ("0 0 0 * * 0", "2030-01-01T00:00:00", "2030-01-06T00:00:00"),  # Sunday
        ("00:10:00", "2030-01-01T00:00:00", "2030-01-01T00:10:00"),  # TimeSpan interval
    ],
)
def test_ncrontab_next_occurrence(expression: str, after: str, expected: str) -> None:
    when = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert Schedule.parse(expression).next_after(when) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*/5 * * * *", "has 5 fields"),
        ("0 61 * * * *", "minute"),
        ("0 * * * * Funday", "not a number"),
        ("0 */0 * * * *", "step"),
    ],
)
def test_ncrontab_errors_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        Schedule.parse(expression)


def test_virtual_clock_only_moves_forward() -> None:
    clock = VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))
    clock.advance(90)
    assert clock.now() == datetime(2030, 1, 1, 0, 1, 30, tzinfo=UTC)
    clock.set(datetime(2029, 1, 1, tzinfo=UTC))
    assert clock.now() == datetime(2030, 1, 1, 0, 1, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    assert clock.now() - timedelta(seconds=90) == datetime(2030, 1, 1, tzinfo=UTC)


def test_bad_app_fails_start_up_with_a_fix(tmp_path: Path) -> None:
    broken = tmp_path / "broken_app.py"
    broken.write_text("import azure.functions as func\nraise RuntimeError('missing setting FOO')\n")
    from devhost.errors import AppLoadError

    with pytest.raises(AppLoadError, match="missing setting FOO"):
        start_harness(broken, tmp_path / "state")


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """``run()`` installs a stderr handler on the root logger; keep it from outliving the test's stderr."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logging")
def test_cli_errors_exit_2_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from typer.testing import CliRunner

    from devhost.run import HostOptions, run
    from perennial_cli.main import app as cli

    result = CliRunner().invoke(cli, ["host", "--clock", "sometimes"])
    assert result.exit_code == 2
    assert "✗ --clock 'sometimes' must be 'real' or 'virtual'" in result.output
    assert "fix: leave it out for real time" in result.output, "as every other refusal says it"
    assert run(HostOptions(app=tmp_path / "missing_app.py", port=0, state=tmp_path / "state")) == 2
    err = capsys.readouterr().err
    assert "missing_app.py does not exist" in err
    assert "fix: pass --app" in err
