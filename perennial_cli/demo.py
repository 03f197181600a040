"""``perennial demo``: the local scenario behind `make demo`.

It grows with the product. Today it runs the pieces that exist and checks each one:
it validates the example model specs, loads the Function App the way the host does and
asks its health endpoint, and generates the card-fraud batches the full scenario plays
(a reference batch, a drifted batch and a corrupt batch) under .perennial/demo/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from perennial_cli.synthetic import fraud_batch, write_csv
from shared.spec import SpecError, load_specs

console = Console()


def _step(title: str) -> None:
    console.rule(f"[bold]{title}")


def demo(
    state: Path = typer.Option(Path(".perennial/demo"), help="Where the demo writes its data and state."),
    rows: int = typer.Option(5000, min=1000, help="Rows per generated batch."),
) -> None:
    """Play the local end-to-end scenario and check every stage; exit 1 if any stage did not do what it claims."""
    started = time.monotonic()
    failures: list[str] = []

    _step("1. Model specs")
    try:
        specs = load_specs("models")
    except SpecError as exc:
        for line in exc.problems:
            console.print(f"[red]✗[/red] {line}")
        raise typer.Exit(1) from None
    for name, spec in specs.items():
        console.print(f"[green]✓[/green] {name}: {spec.description}")

    _step("2. The Function App, loaded as the host loads it")
    import azure.functions as func

    import function_app

    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    console.print(f"registered functions: {', '.join(sorted(functions))}")
    response = functions["health"].get_user_function()(func.HttpRequest("GET", "/api/health", body=b""))
    health = json.loads(response.get_body())
    console.print(
        f"GET /api/health → {response.status_code}: version {health['version']}, platform {health['platform']}"
    )
    if response.status_code != 200 or "fraud" not in health["models"]:
        failures.append("health endpoint did not report the fraud model")

    _step("3. Card-fraud batches for the scenario")
    reference = fraud_batch(rows, seed=1)
    drifted = fraud_batch(rows, seed=2, drift=0.6, start_id=rows)
    corrupt = fraud_batch(rows, seed=3, start_id=2 * rows)
    corrupt["amount"] = corrupt["amount"].astype(object)
    corrupt.loc[corrupt.index[::7], "amount"] = "n/a"  # a broken export: text in a numeric column
    corrupt = corrupt.drop(columns=["merchant_category"])
    for label, frame, name in (
        ("reference", reference, "batch-001.csv"),
        ("drifted", drifted, "batch-002-drifted.csv"),
        ("corrupt", corrupt, "batch-003-corrupt.csv"),
    ):
        path = write_csv(frame, state / "landing" / "fraud" / name)
        fraud_rate = frame["is_fraud"].mean()
        console.print(f"{label:9} {path}  rows={len(frame)}  fraud rate={fraud_rate:.2%}")
    if not 0.002 < reference["is_fraud"].mean() < 0.05:
        failures.append("reference batch fraud rate outside the realistic 0.2-5% band")

    _step("Summary")
    console.print(f"state: {state.resolve()}  ({time.monotonic() - started:.1f}s)")
    if failures:
        for failure in failures:
            console.print(f"[red]✗ {failure}[/red]")
        raise typer.Exit(1)
    console.print("[green]all stages did what they claim[/green]")
