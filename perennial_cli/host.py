"""``perennial host``: run function_app.py locally with devhost (see devhost/README.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from perennial_cli.azurite import refusing, storage_endpoints
from shared.settings import SettingsError, load_local_settings, storage_settings

STORAGE_HINT = (
    "`perennial up` starts Azurite (with Perennial's containers and tables) and the app together; or start "
    "storage yourself and set AzureWebJobsStorage to its connection string"
)


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

    It needs storage already running (AzureWebJobsStorage, with Perennial's containers and tables): it exits 2 at start if that storage does not answer.

    The local Event Grid and Azure ML stand-ins are components, named with --component.

    Example: perennial host --component devhost.eventgrid:component --component devhost.mlservice.component:component
    """
    if clock not in ("real", "virtual"):
        _fail(f"--clock {clock!r} must be 'real' or 'virtual'", "leave it out for real time; virtual is for tests")
    _check_storage(settings if settings is not None else app.resolve().parent / "local.settings.json")

    from devhost.run import HostOptions, run  # the host's own imports (aiohttp, the app's SDKs) load here

    code = run(HostOptions(app, port, state, clock, settings, list(component)))
    if code:
        raise typer.Exit(code=code)


def _check_storage(local_settings: Path) -> None:
    """Exit 2 unless the storage the host will use answers: AzureWebJobsStorage from the environment, else from
    ``local_settings`` (as devhost reads it), else Azurite's standard ports. Every call the app answers needs it;
    without this check the host would start and answer each one with 503."""
    try:
        file_values = load_local_settings(local_settings)
        storage = storage_settings({**file_values, **os.environ})
    except SettingsError as exc:
        _fail(exc.problems[0], "fix the setting (local.settings.json.example lists every one), or unset it")
    if _names_storage(os.environ):
        where = "AzureWebJobsStorage, from the environment"
    elif _names_storage(file_values):
        where = f"AzureWebJobsStorage, from {local_settings}"
    else:
        where = "AzureWebJobsStorage is not set, so the host uses Azurite on its standard ports"
    if storage.connection_string is not None:
        endpoints = storage_endpoints(storage.connection_string)
        needed = [endpoints[kind] for kind in ("blob", "table") if kind in endpoints]
    else:
        needed = [uri for uri in (storage.blob_uri, storage.table_uri) if uri]
    down = refusing(needed)
    if down:
        _fail(f"no storage answers at {', '.join(down)} ({where})", STORAGE_HINT)


def _names_storage(values: Mapping[str, str]) -> bool:
    return any(name == "AzureWebJobsStorage" or name.startswith("AzureWebJobsStorage__") for name in values)


def _fail(message: str, hint: str) -> NoReturn:
    err = Console(stderr=True, highlight=False)
    err.print(f"[red]✗[/red] {escape(message)}", soft_wrap=True)
    err.print(f"  fix: {escape(hint)}", soft_wrap=True)
    raise typer.Exit(code=2)
