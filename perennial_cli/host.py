"""``perennial host``: run function_app.py locally with devhost (see devhost/)."""

from __future__ import annotations

import typer


def host() -> None:
    """Run the Functions app locally (devhost). Not built yet: see issue 'devhost'."""
    typer.echo("devhost is not built yet", err=True)
    raise typer.Exit(code=2)
