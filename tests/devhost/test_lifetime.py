"""Servers stop themselves when whoever started them is killed outright (SIGKILL: no teardown runs).

Each test starts a real launcher process that starts the server the way the demo, `perennial up` and
the e2e tests do, kills the launcher with SIGKILL, and watches the orphaned server go away.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.azurite import free_port
from tests.devhost.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux")


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait a while for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def launch(script: str, cwd: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """A launcher running ``script``, which prints one JSON line (the pids and ports it started) and sleeps."""
    launcher = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert launcher.stdout is not None
    line = launcher.stdout.readline()
    if not line:
        launcher.wait(10)
        raise AssertionError(f"the launcher exited with {launcher.returncode} before starting its server")
    return launcher, json.loads(line)


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def kill_leftover(pid: int) -> None:
    if running(pid):
        os.kill(pid, signal.SIGKILL)


DEVHOST_LAUNCHER = """
import json, sys, time
from pathlib import Path
import httpx
from perennial_cli.localstack import start_devhost
port = {port}
env = {{"PYTHONPATH": {root!r}, "PATH": "/usr/bin:/bin", "AzureWebJobsStorage": {storage!r}}}
process = start_devhost(port, Path("state"), env, Path("host.log"), app=Path("function_app.py").resolve())
deadline = time.monotonic() + 60
while True:
    try:
        if httpx.get(f"http://127.0.0.1:{{port}}/admin/host/status", timeout=1).status_code == 200:
            break
    except httpx.TransportError:
        pass
    assert process.poll() is None and time.monotonic() < deadline, Path("host.log").read_text()
    time.sleep(0.1)
print(json.dumps({{"pid": process.pid}}), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_devhost_stops_when_its_launcher_is_killed(tmp_path: Path, azurite_connection_string: str) -> None:
    app = tmp_path / "app"
    (app / "state").mkdir(parents=True)
    for name in ("function_app.py", "host.json", "orders_blueprint.py"):
        (app / name).write_bytes((FIXTURES / "sample_app" / name).read_bytes())
    (app / "local.settings.json").write_bytes((FIXTURES / "sample_app" / "sample.settings.json").read_bytes())
    launcher, started = launch(
        DEVHOST_LAUNCHER.format(port=free_port(), root=str(ROOT), storage=azurite_connection_string), app
    )
    try:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(10)
        assert gone_within(started["pid"], 15), "devhost outlived its launcher"
        log = (app / "host.log").read_text()
        assert f"the process that started it (pid {launcher.pid}) has exited" in log
        assert "devhost: shutting down" in log  # a clean stop: components stopped, state committed
    finally:
        kill_leftover(started["pid"])


AZURITE_LAUNCHER = """
import json, time
from perennial_cli.azurite import start_azurite
azurite = start_azurite(own_session=True)
print(json.dumps({"pid": azurite.process.pid, "port": azurite.blob_port}), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_azurite_stops_when_its_launcher_is_killed(tmp_path: Path) -> None:
    launcher, started = launch(AZURITE_LAUNCHER, tmp_path)
    try:
        assert running(started["pid"])
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(10)
        assert gone_within(started["pid"], 15), "Azurite outlived its launcher"
    finally:
        kill_leftover(started["pid"])
