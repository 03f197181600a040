"""Fixtures for calling the app's activities as the host does: real registry and blobs on a module's own Azurite,
the local ML platform on a fresh state folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions import clients
from shared.registry import Registry
from shared.runtime import get_runtime
from shared.settings import StorageSettings
from tests.azurite import Azurite, azurite_running

ROOT = Path(__file__).resolve().parents[2]


def clear_caches() -> None:
    for cached in (get_runtime, clients.store, clients.registry, clients.platform, clients.publisher):
        cached.cache_clear()


@pytest.fixture(scope="module")
def storage() -> Iterator[Azurite]:
    """This module's own Azurite: its runs of model "fraud" must not meet other tests' registries."""
    with azurite_running() as server:
        yield server


@pytest.fixture
def activity(
    app_functions: dict[str, Any], storage: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Call an activity by name, with the host's settings pointing at Azurite and a fresh local platform."""
    monkeypatch.setenv("AzureWebJobsStorage", storage.connection_string)
    monkeypatch.setenv("PERENNIAL_PLATFORM", "local")
    monkeypatch.setenv("PERENNIAL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PERENNIAL_MODELS_DIR", str(ROOT / "models"))
    for name in ("PERENNIAL_EVENTGRID_ENDPOINT", "PERENNIAL_EVENTGRID_KEY"):
        monkeypatch.delenv(name, raising=False)
    clear_caches()
    clients.store().ensure_containers()
    clients.registry().ensure_tables()

    def call(name: str, payload: dict[str, Any]) -> Any:
        return app_functions[name].get_user_function()(payload)

    try:
        yield call
    finally:
        clear_caches()


@pytest.fixture
def registry(azurite_connection_string: str) -> Registry:
    """A registry on the session's Azurite: each test uses models of its own (``stranded-…``, ``undelivered-…``)."""
    registry = Registry.from_settings(StorageSettings(azurite_connection_string, None, None, None, None))
    registry.ensure_tables()
    return registry
