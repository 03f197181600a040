"""A stand-in Event Grid custom topic on loopback HTTP, for the real azure-eventgrid client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Nothing listens on the discard port: a publisher pointed here meets a refused connection (a topic that is down).
CLOSED_TOPIC = "http://127.0.0.1:9/api/events"


class FakeTopic:
    """An Event Grid custom topic on 127.0.0.1: records every event it accepts; ``refuse`` picks events to 400."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refuse: set[str] = set()  # run ids whose events are answered 400
        topic = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 400 if any(e["data"].get("run_id") in topic.refuse for e in batch) else 200
                if status == 200:
                    topic.received.extend(batch)
                body = b'{"error": {"code": "BadRequest", "message": "bad event"}}' if status == 400 else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/api/events"

    def ids(self) -> list[str]:
        return [str(e["id"]) for e in self.received]


@contextmanager
def fake_topic() -> Iterator[FakeTopic]:
    """A :class:`FakeTopic` serving on a free port until the block ends."""
    fake = FakeTopic()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
