"""`perennial up`: the whole local stack in the foreground, for the command line to talk to.

The slow test runs the real console script in a subprocess (Azurite from node_modules, devhost, the
local Event Grid and ML service), talks to it through the CLI, and stops it with SIGINT. Whatever
happens, the fixture leaves no Azurite, devhost or job behind: it remembers every process `up` started
and kills what is left. The others check the refusals, which never start anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psutil
import pytest
from typer.testing import CliRunner, Result

from perennial_cli import up as up_module
from perennial_cli.main import app
from perennial_cli.synthetic import fraud_batch
from tests.azurite import free_port

ROOT = Path(__file__).resolve().parents[2]
PERENNIAL = ROOT / ".venv" / "bin" / "perennial"
#: Settings a developer may have exported; the tests must not depend on them.
UNSET: dict[str, str | None] = {"PERENNIAL_FUNCTION_KEY": None, "PERENNIAL_HOST_URL": None, "AzureWebJobsStorage": None}


def perennial(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**UNSET, "COLUMNS": "200"})


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Up:
    """A running `perennial up` subprocess, its output file, and every process it has started."""

    process: subprocess.Popen[bytes]
    output: Path
    port: int
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def remember_children(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)

    def leftovers(self) -> list[psutil.Process]:
        return [p for p in self.seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    def wait_until_healthy(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.remember_children()
            if self.process.poll() is not None:
                pytest.fail(f"`perennial up` exited with {self.process.returncode}:\n{self.text()}")
            # The banner comes right after up's own health check; the test checks the health route itself too.
            with contextlib.suppress(httpx.HTTPError):
                if "Perennial is up" in self.text() and httpx.get(f"{self.base_url}/api/health", timeout=2).is_success:
                    return
            time.sleep(0.5)
        pytest.fail(f"`perennial up` did not answer within {timeout:.0f} s:\n{self.text()}")


@pytest.fixture
def running_up(tmp_path: Path) -> Iterator[Up]:
    """`perennial up` on a free port, run from an empty folder (its state and local key land there)."""
    port = free_port()
    output = tmp_path / "up.out"
    env = {k: v for k, v in os.environ.items() if k not in UNSET and k != "DEVHOST_FUNCTION_KEYS"}
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [str(PERENNIAL), "up", "--port", str(port), "--models", str(ROOT / "models")],
            cwd=tmp_path, env={**env, "COLUMNS": "200"}, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    handle = Up(process, output, port)
    try:
        yield handle
    finally:
        handle.remember_children()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for leftover in handle.leftovers():  # a failed test must not leave a host or Azurite running
            with contextlib.suppress(psutil.Error):
                leftover.kill()


@pytest.mark.slow
@pytest.mark.azurite
def test_up_serves_the_cli_then_stops_everything_on_ctrl_c(running_up: Up, tmp_path: Path, monkeypatch: Any) -> None:
    running_up.wait_until_healthy()
    banner = running_up.text()
    key = (tmp_path / ".perennial" / "devhost" / "function_key").read_text().strip()
    assert running_up.base_url in banner
    assert key in banner
    assert f"perennial models --host {running_up.base_url}" in banner
    ports = re.search(r"Azurite blob :(\d+), queue :(\d+), table :(\d+)", banner)
    assert ports, banner
    azurite_ports = [int(p) for p in ports.groups()]

    # The command a user would type, with the flags the banner printed …
    listed = perennial("models", "--host", running_up.base_url, "--key", key)
    assert listed.exit_code == 0, listed.output
    assert "│ fraud " in listed.output
    # … and without --key, from the folder `up` ran in: the local key is found by itself.
    monkeypatch.chdir(tmp_path)
    started = perennial("retrain", "fraud", "--reason", "up test", "--host", running_up.base_url)
    assert started.exit_code == 0, started.output
    run_id = re.search(r"fraud-[0-9a-f]{16}", started.output)
    assert run_id, started.output

    # The containers exist: with no data landed, the run ends "no_valid_data", not failed on storage.
    deadline = time.monotonic() + 90
    status = ""
    while time.monotonic() < deadline:
        answer = httpx.get(f"{running_up.base_url}/api/runs/{run_id.group()}", headers={"x-functions-key": key})
        status = answer.json().get("status", "") if answer.status_code == 200 else ""
        if status not in ("", "pending", "running"):
            break
        time.sleep(0.5)
    assert status == "no_valid_data", f"{status}\n{running_up.text()}"
    reasons = " ".join(answer.json()["reasons"])
    assert "landing/fraud/ holds no blobs" in reasons
    assert "perennial upload FILE --model fraud" in reasons, "what to do about it"

    # The command the reason names puts a batch where the host sees it, found through up's state folder.
    assert "perennial upload FILE --model fraud" in banner
    batch = tmp_path / "batch-001.csv"
    fraud_batch(300, seed=5).to_csv(batch, index=False)
    uploaded = perennial("upload", str(batch), "--model", "fraud", "--models", str(ROOT / "models"))
    assert uploaded.exit_code == 0, uploaded.output
    assert "landing/fraud/batch-001.csv" in uploaded.output
    again = perennial("upload", str(batch), "--model", "fraud", "--models", str(ROOT / "models"))
    assert again.exit_code == 1, "a batch is not replaced by accident"
    assert "exists already" in again.output
    assert "--overwrite" in again.output

    running_up.remember_children()
    assert running_up.seen, "`perennial up` started no processes?"
    running_up.process.send_signal(signal.SIGINT)
    assert running_up.process.wait(60) == 0, running_up.text()
    assert "stopped: devhost, the local ML service and Azurite" in running_up.text()
    for port in [running_up.port, *azurite_ports]:
        assert not listening(port), f"port {port} still answers after `perennial up` stopped"
    assert running_up.leftovers() == []
    gone = perennial("upload", str(batch), "--model", "fraud", "--models", str(ROOT / "models"))
    assert gone.exit_code == 1
    assert "no `perennial up` runs on .perennial/local" in " ".join(gone.output.split())


def test_up_refuses_a_port_in_use(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = perennial("up", "--port", str(port), "--models", str(ROOT / "models"))
    assert result.exit_code == 1, result.output
    assert f"port {port} on 127.0.0.1 is in use" in result.output
    assert "--port" in result.output
    assert not (tmp_path / ".perennial").exists()  # nothing was started or written


def test_up_without_azurite_says_how_to_install_it(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(up_module, "AZURITE", tmp_path / "node_modules" / ".bin" / "azurite")
    result = perennial("up", "--port", "0", "--models", str(ROOT / "models"))
    assert result.exit_code == 1, result.output
    assert "Azurite is not installed" in result.output
    assert "make setup" in result.output


def test_up_names_a_missing_models_folder(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    result = perennial("up", "--port", "0")
    assert result.exit_code == 2, result.output
    assert "--models models: no such folder" in result.output


def test_up_refuses_a_state_folder_another_up_holds(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    with (state / "up.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242\n")
        lock.flush()
        result = perennial("up", "--port", "0", "--state", str(state), "--models", str(ROOT / "models"))
    assert result.exit_code == 1, result.output
    assert "another `perennial up` (pid 4242)" in result.output


def test_up_exits_1_naming_the_log_when_the_host_dies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "host.log"
    log.write_text("old line\n")
    offset = log.stat().st_size
    log.write_text("old line\nTraceback: the host fell over\n")
    stack = SimpleNamespace(
        process=SimpleNamespace(poll=lambda: 3, returncode=3),
        azurite=SimpleNamespace(process=SimpleNamespace(poll=lambda: None)),
        paths=SimpleNamespace(host_log=log),
    )
    assert up_module._follow(stack, offset, quiet=False) == 1  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    assert "the host fell over" in out
    assert "old line" not in out
    assert "devhost exited with 3" in err
    assert str(log) in err


def test_up_help_has_an_example() -> None:
    result = perennial("up", "--help")
    assert result.exit_code == 0, result.output
    assert "Example: perennial up" in result.output
    for option in ("--port", "--state", "--models", "--clock"):
        assert option in result.output
