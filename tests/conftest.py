"""Shared fixtures. Azurite is started once per test session, on free loopback ports, in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.azurite import Azurite, azurite_running


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with azurite_running() as server:
        yield server


@pytest.fixture
def azurite_connection_string(azurite: Azurite) -> str:
    return azurite.connection_string


@pytest.fixture(scope="session")
def app_functions() -> dict[str, object]:
    """function_app's functions by name. ``get_functions()`` may run only once per app object, so cache it."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}
