"""Entry point of the ``perennial`` console script."""

from __future__ import annotations

import typer

from perennial_cli import demo, host, spec, validate

app = typer.Typer(
    name="perennial",
    help="Perennial: continuous training for Azure ML. Run `perennial COMMAND --help` for details.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(spec.app, name="spec")
app.command("host")(host.host)
app.command("validate")(validate.validate)
app.command("demo")(demo.demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
