"""Inbound event parsing: shared.events.parse_event vs azure-eventgrid's EventGridEvent.from_dict.

The peer only builds an object (it validates nothing, through msrest deserialisation); ours
validates every required field, the blob name, the url/subject agreement and the model and
returns a Trigger. Both run side by side on the same generated BlobCreated events; the
ratio (our time / peer time) shows what validation costs against the SDK's own parsing.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from typing import Any

from azure.eventgrid import EventGridEvent

from shared.events import parse_event

N = 20_000
MODELS = {"fraud", "churn"}


def _events() -> list[dict[str, Any]]:
    template: dict[str, Any] = {
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-11-22T03:00:00.1234567Z",
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {"api": "PutBlob", "contentType": "text/csv", "blobType": "BlockBlob"},
    }
    events = []
    for i in range(N):
        event = copy.deepcopy(template)
        name = f"fraud/2026/11/batch-{i:06d}.csv"
        event["id"] = str(uuid.uuid4())
        event["subject"] = f"/blobServices/default/containers/landing/blobs/{name}"
        event["data"].update(
            url=f"https://st.blob.core.windows.net/landing/{name}",
            eTag=f'"0x8D{i:014X}"',
            contentLength=1000 + i,
            sequencer=f"{i:032X}",
        )
        events.append(event)
    return events


def _time(fn: Callable[[dict[str, Any]], object], events: list[dict[str, Any]]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for event in events:
            fn(event)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    events = _events()
    ours = _time(lambda e: parse_event(e, MODELS), events)
    peer = _time(EventGridEvent.from_dict, events)
    print(f"parse_event (validating)      : {N / ours:>10,.0f} events/s  ({ours / N * 1e6:.1f} µs/event)")
    print(f"EventGridEvent.from_dict (peer): {N / peer:>10,.0f} events/s  ({peer / N * 1e6:.1f} µs/event)")
    print(f"ratio ours/peer time: {ours / peer:.2f}x (best of 3, same {N} events)")
    return 0
