"""Perennial on this machine, as one object: Azurite + devhost (the Functions host, with the local Event
Grid and the local ML service as components) + the clients a user has.

``perennial demo`` drives it; it runs ``function_app.py`` unmodified, exactly as ``perennial host``
would, but with a virtual clock (``POST /admin/clock``) so that 30-minute bakes and debounce windows
pass in seconds; ``perennial up`` runs it on a real clock with the user's specs until Ctrl-C. Everything
it starts it stops again: devhost with SIGTERM (its ML-service component then stops the scoring servers),
any training job still running is cancelled, Azurite is stopped.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from devhost.files import write_text_atomically
from perennial_cli.azurite import Azurite, free_port, port_is_free, start_azurite
from perennial_cli.client import PerennialClient
from shared.settings import load_settings
from shared.spec import load_specs

if TYPE_CHECKING:  # the storage SDKs and the local ML service load when the stack starts, not with the CLI
    from shared.platform.local import LocalPlatform
    from shared.registry import Registry
    from shared.storage import BlobStore

ROOT = Path(__file__).resolve().parents[1]
#: The port `perennial host` uses; the demo takes it when it is free, else any free port.
DEFAULT_PORT = 7071


def perennial_environment(
    *, connection_string: str, models: Path, state: Path, base_url: str, function_key: str, topic_key: str
) -> dict[str, str]:
    """The environment devhost serves Perennial with locally: this process's, plus storage (Azurite), the
    models folder, the local platform's state, the function key, and the local Event Grid topic."""
    return {
        # The local compute runs every job and scoring server on this machine's cores: one thread each (unless
        # the caller chose otherwise), or three parallel candidates each spinning up every core's threads
        # spend most of their time fighting over them (about 3x slower on 2 cores).
        "OMP_NUM_THREADS": "1",
        **os.environ,
        "AzureWebJobsStorage": connection_string,
        "PERENNIAL_PLATFORM": "local",
        "PERENNIAL_MODELS_DIR": str(models.resolve()),
        "PERENNIAL_STATE_DIR": str(state.resolve()),
        "PERENNIAL_LOG_FORMAT": "text",
        "DEVHOST_FUNCTION_KEYS": function_key,
        "PERENNIAL_EVENTGRID_ENDPOINT": f"{base_url}/eventgrid/topics/perennial/api/events",
        "PERENNIAL_EVENTGRID_KEY": topic_key,
    }


def start_devhost(
    port: int, state: Path, env: dict[str, str], log: Path, clock: str = "virtual", app: Path = ROOT / "function_app.py"
) -> subprocess.Popen[bytes]:
    """devhost serving ``app`` (Perennial's function_app.py) unmodified on 127.0.0.1:``port`` (``clock``: virtual or real), with the
    local Event Grid and the local ML service (its endpoints come back after a restart and stop with the host,
    so no scoring server outlives it). Output goes to ``log``; its own session, so its whole group can be
    signalled; it stops by itself if this process dies without stopping it."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [
                sys.executable, "-m", "devhost", "--app", str(app), "--port", str(port),
                "--state", str(state.resolve()), "--clock", clock,
                "--component", "devhost.eventgrid:component",
                "--component", "devhost.mlservice.component:component",
                "--parent-pid", str(os.getpid()),
            ],
            cwd=app.parent, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, timeout: float) -> None:
    """Return once ``GET /api/health`` answers 200; StackError if devhost exits or stays silent for ``timeout``
    seconds (the caller decides whether to kill it: the error says which happened)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"devhost exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/api/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise StackError(f"devhost did not answer within {timeout:.0f} s")


class StackError(RuntimeError):
    """Something the local stack needs did not start or answer; the message says where to look."""


@dataclass(frozen=True)
class StackPaths:
    """Where the local stack keeps its state (all under ``root``; the model specs too, unless ``models_folder``)."""

    root: Path
    models_folder: Path | None = None

    @property
    def models(self) -> Path:
        """PERENNIAL_MODELS_DIR: the model specs the app serves."""
        return self.models_folder if self.models_folder is not None else self.root / "models"

    @property
    def state(self) -> Path:
        """PERENNIAL_STATE_DIR: the local ML service (jobs, registered models, endpoints, scoring logs)."""
        return self.root / "state"

    @property
    def devhost(self) -> Path:
        """devhost's durable task hub (SQLite histories) and virtual clock."""
        return self.root / "devhost"

    @property
    def azurite(self) -> Path:
        """Azurite's storage: landing / quarantine / manifests / feedback blobs, the run registry tables."""
        return self.root / "azurite"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def storage_connection(self) -> Path:
        """Azurite's connection string while the stack runs (``perennial upload`` finds the storage here)."""
        return self.root / "storage-connection"

    @property
    def host_log(self) -> Path:
        return self.logs / "host.log"


class LocalStack:
    """Azurite + devhost serving Perennial from ``paths.models``, and clients for its API, storage and ML service.

    ``key``: the function key the host accepts (default: a fresh one); ``clock``: the host's clock, virtual (the
    demo moves it with :meth:`advance`) or real."""

    def __init__(
        self, paths: StackPaths, port: int | None = None, *, key: str | None = None, clock: str = "virtual"
    ) -> None:
        self.paths = paths
        self.port = port if port is not None else (DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port())
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.key = key or secrets.token_urlsafe(24)
        self.clock = clock
        self.azurite: Azurite | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None
        self._api: PerennialClient | None = None
        self.store: BlobStore | None = None
        self.registry: Registry | None = None
        self.env: dict[str, str] = {}

    # ----------------------------------------------------------------- life-cycle

    def start_storage(self) -> None:
        """Start Azurite (persisted under paths.azurite) and create Perennial's containers and tables."""
        for folder in (self.paths.state, self.paths.devhost, self.paths.logs):
            folder.mkdir(parents=True, exist_ok=True)
        # Its own session, like devhost's: a Ctrl-C reaches the demo only, which stops devhost before Azurite.
        self.azurite = start_azurite(location=self.paths.azurite, own_session=True)
        self.env = perennial_environment(
            connection_string=self.azurite.connection_string,
            models=self.paths.models,
            state=self.paths.state,
            base_url=self.base_url,
            function_key=self.key,
            topic_key=secrets.token_urlsafe(24),
        )
        from shared.registry import Registry
        from shared.storage import BlobStore

        settings = load_settings(self.env)
        self.store = BlobStore.from_settings(settings.storage, load_specs(self.paths.models).keys())
        self.registry = Registry.from_settings(settings.storage, self.store)
        self.store.ensure_containers()
        self.registry.ensure_tables()
        write_text_atomically(self.paths.storage_connection, self.azurite.connection_string + "\n", mode=0o600)

    def start_host(self, timeout: float = 120.0) -> None:
        """Start devhost (its clock, local Event Grid, local ML service) and wait for /api/health."""
        self.process = start_devhost(self.port, self.paths.devhost, self.env, self.paths.host_log, self.clock)
        self._http = httpx.Client(base_url=self.base_url, timeout=120, headers={"x-functions-key": self.key})
        self._api = PerennialClient(self.base_url, self.key, timeout=120)
        try:
            wait_until_healthy(self.process, self.base_url, timeout)
        except StackError as exc:
            raise StackError(f"{exc}; see {self.paths.host_log}") from None

    def stop(self) -> list[str]:
        """Stop everything this stack started; returns what it had to clean up beyond a plain shutdown."""
        notes: list[str] = []
        try:
            if self.process is not None and self.process.poll() is None:
                self._stop_devhost(self.process, notes)
            if self.paths.state.exists():
                self._stop_local_jobs(notes)
        except Exception as exc:  # cleanup goes on: Azurite must stop whatever went wrong before
            notes.append(f"cleanup was incomplete ({exc}); check for leftover processes")
        finally:
            for client in (self._http, self._api):
                if client is not None:
                    client.close()
            if self.azurite is not None:
                self.paths.storage_connection.unlink(missing_ok=True)
                self.azurite.stop()
        return notes

    @staticmethod
    def _stop_devhost(process: subprocess.Popen[bytes], notes: list[str]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            notes.append("devhost did not stop within 30 s of SIGTERM: killed")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def _stop_local_jobs(self, notes: list[str]) -> None:
        platform = self.platform()
        # Training jobs outlive a host on purpose (as Azure ML jobs do); the demo's must not outlive the demo.
        for job in platform.list_jobs():
            if not job.terminal:
                with contextlib.suppress(Exception):
                    platform.cancel_job(job.name)
                notes.append(f"cancelled job {job.name}")
        # devhost's ML-service component stopped the scoring servers; this is a safety net after a kill.
        with contextlib.suppress(Exception):
            platform.stop_endpoints()

    # ----------------------------------------------------------------- clients

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            raise StackError("the host has not been started")
        return self._http

    @property
    def api(self) -> PerennialClient:
        if self._api is None:
            raise StackError("the host has not been started")
        return self._api

    def platform(self) -> LocalPlatform:
        """The local ML service on the host's state folder (endpoints, deployments, jobs, faults)."""
        from shared.platform.local import LocalPlatform

        return LocalPlatform(self.paths.state)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def advance(self, seconds: float) -> None:
        """Move the host's virtual clock (durable timers that come due fire before this returns)."""
        response = self.http.post("/admin/clock", json={"advance_seconds": seconds})
        if response.status_code != 200:
            raise StackError(f"POST /admin/clock answered {response.status_code}: {response.text[:300]}")

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        """A durable instance's status document (None when it does not exist)."""
        response = self.http.get(f"/runtime/webhooks/durabletask/instances/{instance_id}")
        if response.status_code not in (200, 202):  # 202 while it runs, as the real host answers
            return None
        body = response.json()
        return body if isinstance(body, dict) else None

    def custom_status(self, instance_id: str) -> dict[str, Any] | None:
        """The custom status of a running (or pending) instance, else None."""
        body = self.instance(instance_id)
        if body is None or body.get("runtimeStatus") not in ("Running", "Pending"):
            return None
        status = body.get("customStatus")
        return status if isinstance(status, dict) else None

    def log_tail(self, lines: int = 40) -> str:
        """The host log's last lines, without the demo's own polling."""
        try:
            text = self.paths.host_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        noise = ("'Functions.list_runs'", "'Functions.get_run'", "'Functions.list_models'", "/admin/clock")
        kept = [line for line in text.splitlines() if not any(n in line for n in noise)]
        return "\n".join(kept[-lines:])


StopHandler = Any  # a signal handler: Callable[[int, FrameType | None], Any]


def listen_for_stop(handler: StopHandler) -> dict[int, Any]:
    """Send Ctrl-C (SIGINT) and SIGTERM to ``handler``; returns the handlers they had, to put back.

    Also when this process was started with them ignored or blocked: a parent's dispositions and signal mask
    are inherited across exec (a test runner's worker, a job started in the background), and a Ctrl-C that
    never arrives would leave the stack running."""
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    return {sig: signal.signal(sig, handler) for sig in sorted(stops)}


@contextlib.contextmanager
def not_interrupted(handlers: dict[int, Any]) -> Iterator[None]:
    """Ignore the stop signals while the block runs (stopping must not be cut short by a second Ctrl-C), then
    put ``handlers`` (what :func:`listen_for_stop` returned) back, even if the block failed."""
    for sig in handlers:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
