"""``perennial spec check``: validate model spec files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from shared.spec import SpecError, load_spec

app = typer.Typer(help="Work with model specs (models/<name>.yaml).", no_args_is_help=True)


@app.command("check")
def check(
    paths: list[Path] = typer.Argument(..., help="Spec files to validate, e.g. models/*.yaml."),
) -> None:
    """Validate model specs; print every problem with its field and fix. Exit 1 if any spec is invalid."""
    out, err = Console(), Console(stderr=True)
    failed = 0
    for path in paths:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failed += 1
            for line in exc.problems:
                err.print(f"[red]✗[/red] {line}", highlight=False, soft_wrap=True)
            continue
        out.print(
            f"[green]✓[/green] {path}: model {spec.name!r} ({spec.task}, {len(spec.data.columns)} columns, "
            f"rollout {'/'.join(map(str, spec.rollout.steps))}%)",
            highlight=False,
        )
    if failed:
        raise typer.Exit(code=1)
