"""A tiny Functions app with Perennial's two Event Grid function names (test fixture, not Perennial).

It records what the worker-built trigger objects look like so the test can parse them with
shared.events, and fails on purpose for a RetrainRequested whose reason is "explode".
"""

from __future__ import annotations

import threading
from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

_lock = threading.Lock()
EVENTS: list[tuple[str, Any]] = []


@app.function_name("on_blob_created")
@app.event_grid_trigger(arg_name="event")
def on_blob_created(event: func.EventGridEvent) -> None:
    with _lock:
        EVENTS.append(("on_blob_created", event))


@app.function_name("on_alert_event")
@app.event_grid_trigger(arg_name="event")
def on_alert_event(event: func.EventGridEvent) -> None:
    with _lock:
        EVENTS.append(("on_alert_event", event))
    if (event.get_json() or {}).get("reason") == "explode":
        raise RuntimeError("the function failed on purpose")
