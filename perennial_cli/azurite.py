"""Start and stop Azurite (the Azure Storage emulator, from node_modules: `npm ci`) on free loopback ports.

Used by ``perennial demo`` and by the tests. Storage lives in memory unless ``location`` is given
(then Azurite keeps its databases and blobs in that folder).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from devhost.lifetime import die_with_parent

ROOT = Path(__file__).resolve().parents[1]
AZURITE = ROOT / "node_modules" / ".bin" / "azurite"
# The well-known development account Azurite ships with (public, documented by Microsoft; not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: Where ``UseDevelopmentStorage=true`` points: Azurite on its standard ports.
DEVELOPMENT_STORAGE = {
    "blob": f"http://127.0.0.1:10000/{ACCOUNT}",
    "queue": f"http://127.0.0.1:10001/{ACCOUNT}",
    "table": f"http://127.0.0.1:10002/{ACCOUNT}",
}
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` and it can be bound. SO_REUSEADDR, as the servers bind:
    a connection left in TIME_WAIT by the last run (a minute after Ctrl-C) does not make the port busy. Where
    SO_REUSEADDR would let the bind share a listening port (Windows, macOS beside 0.0.0.0), the connect says so."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def storage_endpoints(connection: str) -> dict[str, str]:
    """The service endpoints (``blob``, ``queue``, ``table``) a storage connection string names: its
    ``BlobEndpoint=`` … fields, or Azurite's standard ports for ``UseDevelopmentStorage=true``. An account's
    public endpoints (``AccountName=…;EndpointSuffix=…``) are not named, so not listed."""
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (part.partition("=") for part in connection.split(";"))
        if value
    }
    named = {kind: fields[f"{kind}endpoint"] for kind in ("blob", "queue", "table") if f"{kind}endpoint" in fields}
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return {**DEVELOPMENT_STORAGE, **named}
    return named


def refusing(endpoints: Iterable[str], timeout: float = 2.0) -> list[str]:
    """Those of the loopback ``endpoints`` (URLs) where nothing accepts a connection: one quick probe each, no
    retries. An endpoint on another machine is not probed (a proxy may stand between), so never listed."""
    refused: list[str] = []
    for endpoint in endpoints:
        url = urlparse(endpoint)
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
        except ValueError:  # not a port: the SDK names the setting that is wrong
            continue
        if url.hostname not in LOOPBACK:
            continue
        with socket.socket(socket.AF_INET6 if url.hostname == "::1" else socket.AF_INET) as probe:
            probe.settimeout(timeout)
            if probe.connect_ex((url.hostname, port)) != 0:
                refused.append(endpoint)
    return refused


def storage_answers(connection: str) -> bool:
    """Whether the blob endpoint of a local connection string accepts connections (one quick probe, no retries);
    True for storage elsewhere: the SDK says what is wrong with that."""
    blob = storage_endpoints(connection).get("blob")
    return blob is None or not refusing([blob])


@dataclass
class Azurite:
    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        host = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={host}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={host}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={host}:{self.table_port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_azurite(timeout: float = 30.0, location: Path | None = None, own_session: bool = False) -> Azurite:
    """Start blob, queue and table services (in memory, or persisted under ``location``); raise with a fix
    if Azurite is not installed. ``own_session``: a Ctrl-C of the caller's process group does not reach it
    (the caller stops it, after whatever still writes to it)."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: run `npm ci` (make test does it for you)")
    if shutil.which("node") is None:
        raise RuntimeError("node is not on PATH: install Node.js 18+ to run Azurite")
    blob, queue, table = free_port(), free_port(), free_port()
    if location is None:
        storage = ["--inMemoryPersistence"]
    else:
        location.mkdir(parents=True, exist_ok=True)
        storage = ["--location", str(location)]
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed below once start-up is over (the child keeps its copy)
    process = subprocess.Popen(
        [
            str(AZURITE),
            "--silent",
            *storage,
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(blob),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(queue),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(table),
        ],
        stdout=subprocess.DEVNULL,
        # A file, not a pipe: nobody reads Azurite's stderr while it runs, and a full pipe would stall it.
        stderr=errors,
        env={**os.environ, "AZURITE_DISABLE_TELEMETRY": "1"},
        start_new_session=own_session,
        # Stopped with us even if we are killed outright (call from the main thread: see devhost.lifetime).
        preexec_fn=die_with_parent(signal.SIGTERM),
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                errors.seek(0)
                err = errors.read().decode(errors="replace")
                raise RuntimeError(f"Azurite exited with {process.returncode}: {err}")
            if all(_listening(p) for p in (blob, queue, table)):
                return Azurite(process, blob, queue, table)
            time.sleep(0.1)
        raise RuntimeError(f"Azurite did not listen within {timeout}s")
    except BaseException:
        # Not started (or Ctrl-C meanwhile): in its own session it would not get the terminal's Ctrl-C.
        process.kill()
        process.wait()
        raise
    finally:
        errors.close()
