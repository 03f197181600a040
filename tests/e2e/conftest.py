from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.azurite import Azurite, azurite_running
from tests.e2e.harness import PerennialHost, fast_fraud_spec


@pytest.fixture
def fresh_azurite() -> Iterator[Azurite]:
    """Each end-to-end test gets its own empty storage (registry and landing are shared state)."""
    with azurite_running() as server:
        yield server


@pytest.fixture
def perennial(tmp_path: Path, fresh_azurite: Azurite) -> Iterator[PerennialHost]:
    fast_fraud_spec(tmp_path / "models")
    host = PerennialHost(tmp_path, fresh_azurite.connection_string)
    host.start()
    try:
        yield host
    finally:
        host.stop()
