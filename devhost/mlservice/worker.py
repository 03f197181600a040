"""One local "deployment instance": loads a scoring script the way Azure ML's inference server does.

``python -m devhost.mlservice.worker <script> <port_file> <faults_file>`` with ``AZUREML_MODEL_DIR``
set: it imports the script, calls ``init()``, listens on a free loopback port (written to
``port_file``) and answers ``GET /`` (liveness/readiness) and ``POST /score`` → ``run(raw)``.
A ``ValueError`` from ``run`` is the caller's fault (400, with its message); anything else is
a 500. ``run`` is called under a lock: scoring scripts assume one request at a time, as
the inference server's default single worker does.

Fault injection for tests (``faults_file``, JSON, re-read when it changes): ``crash_on_load``
(exit 1 before listening), ``error_rate`` (that share of requests answer 500),
``added_latency_ms`` (sleep before scoring) and ``flip_rate`` (that share of binary predictions
answer the other class: a silently worse model, with no errors and no extra latency).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devhost.lifetime import exit_when_orphaned
from shared.platform.localstore import read_json, write_json


class Faults:
    """The faults file, re-read whenever it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.values: dict[str, Any] = {}

    def current(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            self.values, self._stamp = {}, None
            return self.values
        if stamp != self._stamp:
            self.values, self._stamp = read_json(self.path) or {}, stamp
        return self.values


def load_script(path: Path) -> tuple[Callable[[], Any], Callable[[str], Any]]:
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("score", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import scoring script {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    init, run = getattr(module, "init", None), getattr(module, "run", None)
    if not callable(init) or not callable(run):
        raise ImportError(f"{path} must define init() and run(raw)")
    return init, run


def serve(script: Path, port_file: Path, faults_path: Path) -> int:
    # Exit once the router that started us is gone. (Not PR_SET_PDEATHSIG: that fires when the parent
    # *thread* exits, and the router starts workers from short-lived request threads.)
    threading.Thread(target=exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    faults = Faults(faults_path)
    if faults.current().get("crash_on_load"):
        print("injected fault: crash_on_load", file=sys.stderr, flush=True)
        return 1
    init, run = load_script(script)
    init()
    lock = threading.Lock()
    rng = random.Random()  # noqa: S311 (fault injection, not cryptography)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes; without TCP_NODELAY, Nagle + delayed ACK add 40 ms.
        disable_nagle_algorithm = True

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply(HTTPStatus.OK, {"status": "Healthy"})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", errors="replace")
            if self.path.split("?")[0] != "/score":
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}; POST /score"})
                return
            current = faults.current()
            delay = float(current.get("added_latency_ms", 0.0))
            if delay > 0:
                time.sleep(delay / 1000.0)
            if rng.random() < float(current.get("error_rate", 0.0)):
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "injected fault: error_rate"})
                return
            try:
                with lock:
                    result = run(raw)
            except ValueError as exc:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            except Exception as exc:
                print(f"run() failed: {exc!r}", file=sys.stderr, flush=True)
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"scoring failed: {exc}"})
                return
            flip = float(current.get("flip_rate", 0.0))
            if flip > 0 and isinstance(result, dict):
                for prediction in result.get("predictions", []):
                    if prediction.get("class") in (0, 1) and rng.random() < flip:
                        prediction["class"] = 1 - prediction["class"]
                        prediction.pop("label", None)  # the other class's label value is not known here
            self._reply(HTTPStatus.OK, result)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the deployment log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    write_json(port_file, {"port": server.server_address[1], "pid": os.getpid()})
    print(f"listening on 127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m devhost.mlservice.worker <script> <port_file> <faults_file>", file=sys.stderr)
        return 2
    return serve(Path(args[0]), Path(args[1]), Path(args[2]))


if __name__ == "__main__":
    raise SystemExit(main())
