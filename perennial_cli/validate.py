"""``perennial validate``: check a data file against a model's data contract."""

from __future__ import annotations

import typer


def validate() -> None:
    """Validate a CSV/Parquet file against a spec. Not built yet: see issue 'validation'."""
    typer.echo("validation is not built yet", err=True)
    raise typer.Exit(code=2)
