"""How the CLI colours a status word (a run's, a step's, a canary verdict), in one place for every command."""

from __future__ import annotations

from rich.markup import escape

STATUS_COLOURS = {
    "succeeded": "green",
    "promoted": "green",
    "completed": "green",
    "pass": "green",
    "running": "cyan",
    "pending": "cyan",
    "not_promoted": "yellow",
    "no_valid_data": "yellow",
    "inconclusive": "yellow",
    "marginal": "yellow",
    "cancelled": "yellow",
    "merged": "yellow",
    "suppressed": "yellow",
    "aborted": "yellow",
    "failed": "red",
    "fail": "red",
    "rolled_back": "red",
}


def status_markup(value: str | None) -> str:
    """``value`` as rich markup in its colour (escaped; uncoloured when unknown, empty when missing)."""
    if not value:
        return ""
    colour = STATUS_COLOURS.get(value)
    return f"[{colour}]{escape(value)}[/{colour}]" if colour else escape(value)
