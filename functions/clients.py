"""The process-wide clients every trigger uses, built once per worker from settings.

One place, so that activities, timers and the API share one connection pool per service (an
Azure Functions worker keeps the module loaded between invocations).
"""

from __future__ import annotations

from functools import lru_cache

from shared.platform import MLPlatform, create_platform
from shared.publish import publisher_from_settings
from shared.registry import Registry
from shared.reliable_publish import ReliablePublisher
from shared.runtime import get_runtime
from shared.storage import BlobStore


@lru_cache(maxsize=1)
def store() -> BlobStore:
    runtime = get_runtime()
    return BlobStore.from_settings(runtime.settings.storage, runtime.specs.keys())


@lru_cache(maxsize=1)
def registry() -> Registry:
    return Registry.from_settings(get_runtime().settings.storage, store())


@lru_cache(maxsize=1)
def platform() -> MLPlatform:
    return create_platform(get_runtime().settings)


@lru_cache(maxsize=1)
def publisher() -> ReliablePublisher:
    """The configured topic (or the local file); what it refuses is kept and sent by the housekeeping timer."""
    return ReliablePublisher(publisher_from_settings(get_runtime().settings), store())
