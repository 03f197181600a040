"""Start and stop Azurite for the tests: the launcher lives in perennial_cli/azurite.py (the demo uses it too)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from perennial_cli.azurite import ACCOUNT, AZURITE, KEY, ROOT, Azurite, free_port, start_azurite

__all__ = ["ACCOUNT", "AZURITE", "KEY", "ROOT", "Azurite", "azurite_running", "free_port", "start_azurite"]


@contextmanager
def azurite_running() -> Iterator[Azurite]:
    """An in-memory Azurite on free loopback ports, stopped on exit (the fixtures' body)."""
    server = start_azurite()
    try:
        yield server
    finally:
        server.stop()
