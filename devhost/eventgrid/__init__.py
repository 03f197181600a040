"""The local Event Grid for devhost: subscriptions file, blob watcher, custom topics, delivery.

Enable it in devhost with ``--component devhost.eventgrid:component``, or run it beside
another host with ``python -m devhost.eventgrid --host-url http://127.0.0.1:7071``.
"""

from __future__ import annotations

from devhost.eventgrid.delivery import Deliverer, DeliveryOptions, DeliveryRecord
from devhost.eventgrid.grid import LocalEventGrid
from devhost.eventgrid.subscriptions import SubscriptionsError, SubscriptionsFile, load_subscriptions
from devhost.eventgrid.watcher import BlobWatcher, blob_created_event

__all__ = [
    "BlobWatcher",
    "Deliverer",
    "DeliveryOptions",
    "DeliveryRecord",
    "LocalEventGrid",
    "SubscriptionsError",
    "SubscriptionsFile",
    "blob_created_event",
    "component",
    "load_subscriptions",
]


def component() -> LocalEventGrid:
    """The factory ``--component devhost.eventgrid:component`` calls: the default subscriptions, real retries."""
    return LocalEventGrid()
