"""One local online endpoint: a real HTTP server on loopback that speaks Azure ML's scoring protocol.

``python -m devhost.mlservice.router <state_dir> <endpoint>`` (started by LocalPlatform, detached,
so endpoints outlive the process that created them, as in Azure):

- ``POST /score`` with ``Authorization: Bearer <key>`` (401 otherwise). An
  ``azureml-model-deployment`` header pins the request to that deployment; otherwise the live
  split picks one at random by weight, and — with the mirror percentage's probability — a copy
  goes to the mirror deployment whose answer is recorded but discarded. Responses carry an
  ``azureml-model-deployment`` header naming the deployment that answered, as Azure's do.
- One worker subprocess per deployment (:mod:`devhost.mlservice.worker`) loads the scoring
  script with ``AZUREML_MODEL_DIR``; the router starts, health-checks (readiness) and replaces
  workers when told to sync, and restarts one that died (liveness), as Azure restarts a container.
- Every request gets a request id: the client's ``x-ms-client-request-id`` or ``x-request-id`` header
  when it is a sane token, else a new uuid4; the response names it in ``x-request-id`` (and echoes
  ``x-ms-client-request-id`` when sent), as Azure ML endpoints do. A mirrored copy keeps the id.
- Every request is appended to ``metrics/<deployment>.jsonl``: time, latency, status, mirrored or
  not (what LocalPlatform reads for the health gates), and the scoring record — request id,
  deployment, row count, predicted class and probability per row, and the input values of the
  first 100 rows (:func:`shared.platform.scoring.router_line`), which live accuracy and input drift read.
- ``POST /__perennial/sync`` (same key) reconciles workers with ``deployments/*.json`` and writes
  each deployment's provisioning state; ``POST /__perennial/shutdown`` stops everything.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shared.platform.localstore import FileLock, LocalLayout, read_json, write_json
from shared.platform.scoring import RESPONSE_REQUEST_ID_HEADER, request_id_from, router_line

ADMIN_PREFIX = "/__perennial/"
#: Locally a deployment gets at most this long to become ready (Azure allows far longer; tests cannot wait).
MAX_READY_SECONDS = 120.0


@dataclass
class Worker:
    deployment: str
    generation: int
    process: subprocess.Popen[bytes]
    port: int


class Endpoint:
    """The endpoint's config (endpoint.json), re-read whenever it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.document: dict[str, Any] = {}

    def current(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return self.document
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._stamp:
            self.document, self._stamp = read_json(self.path) or {}, stamp
        return self.document


class Router:
    def __init__(self, state_dir: Path, endpoint: str) -> None:
        self.layout = LocalLayout(state_dir)
        self.name = endpoint
        self.endpoint = Endpoint(self.layout.endpoint_file(endpoint))
        self.workers: dict[str, Worker] = {}
        self.workers_lock = threading.RLock()
        self.metrics_locks: dict[str, threading.Lock] = {}
        self.rng = random.Random()  # noqa: S311 (traffic split, not cryptography)
        self.rng_lock = threading.Lock()
        self.mirror_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mirror")
        self.stopping = threading.Event()

    # ----------------------------------------------------------------- workers

    def _deployments(self) -> dict[str, dict[str, Any]]:
        folder = self.layout.endpoint_dir(self.name) / "deployments"
        found: dict[str, dict[str, Any]] = {}
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            if path.name.count(".") == 1:  # <name>.json, not <name>.status.json / .faults.json
                document = read_json(path)
                if document is not None:
                    found[path.stem] = document
        return found

    def _start_worker(self, name: str, document: dict[str, Any]) -> Worker:
        spec = document["spec"]
        port_file = self.layout.endpoint_dir(self.name) / "workers" / f"{name}-{document['generation']}.port.json"
        port_file.unlink(missing_ok=True)
        log_path = self.layout.deployment_log(self.name, name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **spec.get("environment_variables", {}),
            "AZUREML_MODEL_DIR": document["model_dir"],
            "AZUREML_ENTRY_SCRIPT": spec.get("scoring_script", "score.py"),
            "PERENNIAL_MODEL_VERSION": str(spec.get("model_version", "")),
            "PYTHONUNBUFFERED": "1",
        }
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [
                    document.get("python") or sys.executable,
                    "-m",
                    "devhost.mlservice.worker",
                    document["script"],
                    str(port_file),
                    str(self.layout.faults_file(self.name, name)),
                ],
                cwd=document.get("cwd") or None,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        probe = spec.get("readiness_probe", {})
        budget = probe.get("initial_delay_seconds", 10) + probe.get("period_seconds", 10) * probe.get(
            "failure_threshold", 30
        )
        deadline = time.monotonic() + min(float(budget), MAX_READY_SECONDS)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the scoring worker exited with code {process.returncode} while loading")
            info = read_json(port_file)
            if info and self._ready(int(info["port"])):
                return Worker(name, int(document["generation"]), process, int(info["port"]))
            time.sleep(0.05)
        process.kill()
        process.wait()
        raise RuntimeError(f"the scoring worker did not pass its readiness probe within {budget}s")

    @staticmethod
    def _ready(port: int) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    @staticmethod
    def _stop_worker(worker: Worker) -> None:
        if worker.process.poll() is None:
            worker.process.terminate()
            try:
                worker.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()

    def _log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.layout.deployment_log(self.name, name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def sync(self, only: str | None = None) -> dict[str, dict[str, Any]]:
        """Make the workers match deployments/*.json; return (and write) each deployment's status."""
        statuses: dict[str, dict[str, Any]] = {}
        with self.workers_lock:
            wanted = self._deployments()
            for name in list(self.workers):
                if name not in wanted:
                    self._stop_worker(self.workers.pop(name))
            for name, document in wanted.items():
                if only is not None and name != only:
                    continue
                current = self.workers.get(name)
                generation = int(document["generation"])
                if current and current.generation == generation and current.process.poll() is None:
                    status = {"provisioning_state": "Succeeded", "error": None, "generation": generation}
                else:
                    try:
                        worker = self._start_worker(name, document)
                    except (RuntimeError, OSError, KeyError) as exc:
                        # A failed update leaves the old worker serving, as Azure keeps the old pods.
                        status = {
                            "provisioning_state": "Failed",
                            "error": f"{exc}\n{self._log_tail(name)}".strip(),
                            "generation": generation,
                        }
                    else:
                        self.workers[name] = worker
                        if current:
                            self._stop_worker(current)
                        status = {"provisioning_state": "Succeeded", "error": None, "generation": generation}
                write_json(self.layout.deployment_status_file(self.name, name), status)
                statuses[name] = status
        return statuses

    def _watch_liveness(self) -> None:
        """Restart a worker that died (Azure restarts a container that fails its liveness probe)."""
        while not self.stopping.wait(1.0):
            with self.workers_lock:
                dead = [w for w in self.workers.values() if w.process.poll() is not None]
                for worker in dead:
                    document = self._deployments().get(worker.deployment)
                    if document is None:
                        self.workers.pop(worker.deployment, None)
                        continue
                    with contextlib.suppress(RuntimeError, OSError, KeyError):
                        self.workers[worker.deployment] = self._start_worker(worker.deployment, document)

    # ----------------------------------------------------------------- scoring

    def pick(self, traffic: dict[str, int]) -> str | None:
        live = [(name, weight) for name, weight in traffic.items() if weight > 0]
        if not live:
            return None
        with self.rng_lock:
            point = self.rng.uniform(0, sum(w for _, w in live))
        for name, weight in live:
            point -= weight
            if point < 0:
                return name
        return live[-1][0]

    def forward(self, deployment: str, body: bytes, mirrored: bool = False, request_id: str = "") -> tuple[int, bytes]:
        """Send ``body`` to the deployment's worker; record the outcome in its metrics file."""
        with self.workers_lock:
            worker = self.workers.get(deployment)
        started = time.perf_counter()
        if worker is None or worker.process.poll() is not None:
            status, data = 503, json.dumps({"error": f"deployment {deployment!r} has no healthy instance"}).encode()
        else:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=60)
                conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                status, data = response.status, response.read()
                conn.close()
            except OSError as exc:
                status, data = 502, json.dumps({"error": f"deployment {deployment!r} failed: {exc}"}).encode()
        ms = (time.perf_counter() - started) * 1000.0
        self._record(deployment, request_id or str(uuid.uuid4()), ms, status, body, data, mirrored)
        return status, data

    def _record(
        self, deployment: str, request_id: str, ms: float, status: int, body: bytes, data: bytes, mirrored: bool
    ) -> None:
        line = json.dumps(
            router_line(
                request_id=request_id,
                deployment=deployment,
                at=time.time(),
                latency_ms=ms,
                status=status,
                mirrored=mirrored,
                request=body,
                response=data,
            ),
            allow_nan=False,
        )
        lock = self.metrics_locks.setdefault(deployment, threading.Lock())
        path = self.layout.metrics_file(self.name, deployment)
        with lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    def maybe_mirror(self, body: bytes, request_id: str) -> None:
        mirror = {k: v for k, v in self.endpoint.current().get("mirror", {}).items() if v > 0}
        for name, percent in mirror.items():
            with self.rng_lock:
                hit = self.rng.random() * 100 < percent
            if hit:
                self.mirror_pool.submit(self.forward, name, body, True, request_id)

    # ----------------------------------------------------------------- server

    def make_handler(self) -> type[BaseHTTPRequestHandler]:
        router = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes; without TCP_NODELAY, Nagle + delayed ACK add 40 ms.
            disable_nagle_algorithm = True

            def _reply(
                self, status: int, data: bytes, deployment: str | None = None, request_id: str | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if deployment:
                    self.send_header("azureml-model-deployment", deployment)
                if request_id:
                    self.send_header(RESPONSE_REQUEST_ID_HEADER, request_id)
                    client_id = self.headers.get("x-ms-client-request-id")
                    if client_id == request_id:
                        self.send_header("x-ms-client-request-id", client_id)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self._reply(status, json.dumps({"error": message}).encode())

            def _authorised(self) -> bool:
                key = router.endpoint.current().get("key")
                if key and self.headers.get("Authorization", "") == f"Bearer {key}":
                    return True
                self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong key: send 'Authorization: Bearer <key>'")
                return False

            def do_GET(self) -> None:
                if self.path == f"{ADMIN_PREFIX}health":
                    self._reply(HTTPStatus.OK, json.dumps({"endpoint": router.name, "pid": os.getpid()}).encode())
                else:
                    self._error(HTTPStatus.NOT_FOUND, f"no route GET {self.path}; POST /score")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                if not self._authorised():
                    return
                if path == f"{ADMIN_PREFIX}sync":
                    only = (json.loads(body or b"{}") or {}).get("deployment")
                    self._reply(HTTPStatus.OK, json.dumps(router.sync(only)).encode())
                    return
                if path == f"{ADMIN_PREFIX}shutdown":
                    self._reply(HTTPStatus.OK, b"{}")
                    threading.Thread(target=router.shutdown, daemon=True).start()
                    return
                if path != "/score":
                    self._error(HTTPStatus.NOT_FOUND, f"no route POST {path}; POST /score")
                    return
                request_id = request_id_from(self.headers.get)
                pinned = self.headers.get("azureml-model-deployment")
                if pinned:
                    if pinned not in router._deployments():
                        message = f"deployment {pinned!r} does not exist on this endpoint"
                        self._reply(HTTPStatus.NOT_FOUND, json.dumps({"error": message}).encode(), None, request_id)
                        return
                    deployment = pinned
                else:
                    picked = router.pick(dict(router.endpoint.current().get("traffic", {})))
                    if picked is None:
                        message = (
                            "no valid deployments to route to: give a deployment live traffic, or pin one with "
                            "the azureml-model-deployment header"
                        )
                        error = json.dumps({"error": message}).encode()
                        self._reply(HTTPStatus.SERVICE_UNAVAILABLE, error, None, request_id)
                        return
                    deployment = picked
                    router.maybe_mirror(body, request_id)
                status, data = router.forward(deployment, body, request_id=request_id)
                self._reply(status, data, deployment, request_id)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def shutdown(self) -> None:
        self.stopping.set()
        with self.workers_lock:
            for worker in self.workers.values():
                self._stop_worker(worker)
            self.workers.clear()
        self.server.shutdown()

    def serve(self) -> int:
        me = FileLock(self.layout.router_lock(self.name))
        if not me.acquire(timeout=2.0):
            return 0  # another router serves this endpoint
        previous = read_json(self.layout.router_file(self.name)) or {}
        handler = self.make_handler()
        try:  # keep the scoring URI stable across restarts when the old port is free
            self.server = ThreadingHTTPServer(("127.0.0.1", int(previous.get("port", 0))), handler)
        except OSError:
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=self.shutdown, daemon=True).start())
        self.sync()
        write_json(self.layout.router_file(self.name), {"port": self.server.server_address[1], "pid": os.getpid()})
        threading.Thread(target=self._watch_liveness, daemon=True).start()
        self.server.serve_forever()
        self.mirror_pool.shutdown(wait=False)
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m devhost.mlservice.router <state_dir> <endpoint>", file=sys.stderr)
        return 2
    return Router(Path(args[0]), args[1]).serve()


if __name__ == "__main__":
    raise SystemExit(main())
