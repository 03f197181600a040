"""Entry point of the ``perennial`` console script."""

from __future__ import annotations

import logging
from typing import Any

import typer
from typer.core import TyperOption

import shared
from perennial_cli import demo, feedback, host, runs, score, spec, up, upload, validate


def _flags_show_no_type() -> None:
    """typer 0.29 prints a ``<bool>`` type beside flags such as ``--json``, which reads as if they took a value
    (``--json true`` is a usage error). A flag's help needs no type column."""
    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    setattr(TyperOption, "display_type_rich", display_type_rich)  # noqa: B010 (mypy refuses a method assignment)


_flags_show_no_type()
# The Azure SDK's credential chain logs every failed sign-in attempt as a WARNING, a block of lines per retry, which
# Python prints when nothing else handles it: the command's own message says what failed and what to do.
logging.getLogger("azure.identity").setLevel(logging.ERROR)

app = typer.Typer(
    name="perennial",
    help="Perennial: continuous training for Azure ML. Run `perennial COMMAND --help` for details.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"perennial {shared.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Options that come before COMMAND."""


app.add_typer(spec.app, name="spec")
app.command("up")(up.up)
app.command("host")(host.host)
app.command("validate")(validate.validate)
app.command("upload")(upload.upload)
app.command("feedback")(feedback.feedback)
app.command("score")(score.score)
app.command("demo")(demo.demo)
app.command("models", rich_help_panel=runs.PANEL)(runs.models)
app.command("retrain", rich_help_panel=runs.PANEL)(runs.retrain)
app.command("runs", rich_help_panel=runs.PANEL)(runs.runs)
app.command("run", rich_help_panel=runs.PANEL)(runs.show_run)
app.command("approve", rich_help_panel=runs.PANEL)(runs.approve)
app.command("reject", rich_help_panel=runs.PANEL)(runs.reject)
app.command("abort", rich_help_panel=runs.PANEL)(runs.abort)
app.command("rollback", rich_help_panel=runs.PANEL)(runs.rollback)
app.command("rollout", rich_help_panel=runs.PANEL)(runs.rollout)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
