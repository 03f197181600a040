"""``perennial host``: run function_app.py locally with devhost (see devhost/README.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from devhost.run import HostOptions, run


def host(
    app: Path = typer.Option(Path("function_app.py"), "--app", help="The Functions app's entry module."),
    port: int = typer.Option(7071, "--port", min=0, max=65535, help="Port on 127.0.0.1 (0 picks a free one)."),
    state: Path = typer.Option(
        Path(".perennial/devhost"), "--state", help="State folder: SQLite histories, function key."
    ),
    clock: str = typer.Option("real", "--clock", help="real, or virtual (tests move it with POST /admin/clock)."),
    settings: Path | None = typer.Option(None, "--settings", help="local.settings.json (default: beside --app)."),
    component: list[str] = typer.Option([], "--component", help="module:factory of a plug-in (repeatable)."),
) -> None:
    """Run the Functions app alone on devhost: HTTP, Event Grid, timers and Durable Functions.

    For working on devhost itself (`perennial up` runs the whole local stack).

    It needs storage already running (AzureWebJobsStorage, with Perennial's containers and tables).

    The local Event Grid and Azure ML stand-ins are components, named with --component.

    Example: perennial host --component devhost.eventgrid:component --component devhost.mlservice.component:component
    """
    if clock not in ("real", "virtual"):
        typer.echo(f"--clock {clock!r} must be 'real' or 'virtual'", err=True)
        raise typer.Exit(code=2)
    code = run(HostOptions(app, port, state, clock, settings, list(component)))
    if code:
        raise typer.Exit(code=code)
