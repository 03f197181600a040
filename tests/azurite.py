"""Start and stop Azurite for the tests: the launcher lives in perennial_cli/azurite.py (the demo uses it too)."""

from __future__ import annotations

from perennial_cli.azurite import ACCOUNT, AZURITE, KEY, ROOT, Azurite, free_port, start_azurite

__all__ = ["ACCOUNT", "AZURITE", "KEY", "ROOT", "Azurite", "free_port", "start_azurite"]
