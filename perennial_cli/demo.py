"""``perennial demo``: the local end-to-end scenario behind `make demo`.

It starts Azurite, devhost (the Functions host, running function_app.py unmodified, with the local
Event Grid and the local ML service) and plays :mod:`perennial_cli.scenario` on generated card-fraud
data, checking every stage. Everything it starts is stopped again, on success, failure or Ctrl-C.
"""

from __future__ import annotations

import io
import shutil
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from perennial_cli.client import ClientError
from perennial_cli.localstack import LocalStack, StackPaths, listen_for_stop, not_interrupted
from shared.spec import SpecError, read_spec

if TYPE_CHECKING:  # the scenario brings pandas and scipy: loaded when the demo runs, not with every command
    from perennial_cli.scenario import Scenario, StageFailed
    from shared.spec import ModelSpec

#: A file the demo leaves in its state folder, so that it only ever wipes a folder it made itself.
MARKER = ".perennial-demo"
DEFAULT_STATE = Path(".perennial/demo")


def demo(
    state: Path = typer.Option(
        DEFAULT_STATE, "--state", help="The demo's state folder; WIPED at the start of every run."
    ),
    spec: Path = typer.Option(
        Path("models/fraud.yaml"), "--spec", help="The model spec to play (its name must be fraud)."
    ),
    rows: int = typer.Option(
        20_000, "--rows", min=4000, max=200_000, help="Rows of the first batch (the later ones have half as many)."
    ),
    port: int | None = typer.Option(
        None,
        "--port",
        min=1,
        max=65535,
        help="The host's port on 127.0.0.1. Default: 7071 if it is free, else any free port.",
    ),
) -> None:
    """Play Perennial's whole loop on this machine and check every stage; exit 1 if any stage fails.

    It starts Azurite (storage), devhost (the Functions host, running function_app.py unmodified) with the local Event Grid and the local ML service (training jobs, model registry, online endpoints), then plays a card-fraud scenario, narrating what the app does and checking that it did it:

    1. the first batch lands → validated, 3 candidates trained, the first model shipped;
    2. scoring traffic flows and labels arrive; a drifted batch lands → drift detected → retrain → the challenger beats the champion → shadow, 10 % / 50 % / 100 %, each bake analysed on real scoring traffic;
    3. a corrupt batch lands → quarantined with a readable report, the champion untouched;
    4. a challenger that fails under load (fault injection) → rolled back at its first step, with the evidence;
    5. a summary: runs, decisions, the traffic history and where the state lives.

    Time: about 2 minutes on a 2-core machine (training is real; the host runs on a virtual clock, so 30-minute bakes take seconds). Everything it starts is stopped when it ends, fails or is interrupted.

    State: everything lives under --state (default .perennial/demo), which is WIPED at the start of every run: data/ (the generated batches), models/ (the spec played), azurite/ (blobs and the run registry), state/ (jobs, registered models, endpoints, scoring logs), devhost/ (durable histories), logs/host.log.
    """
    from perennial_cli.scenario import MODEL, Scenario, StageFailed, make_batches

    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # a person following through a pipe (| tee) sees each line
    console = Console(highlight=False)
    started = time.monotonic()
    paths = StackPaths(state)
    model_spec = _prepare(state, spec, console)
    console.rule("[bold]Stage 0 · set-up")
    console.print(
        f"model [bold]{MODEL}[/bold] from {escape(str(spec))}: {model_spec.training.max_candidates} candidates, "
        f"primary metric {model_spec.promotion.primary_metric} (first-run floor "
        f"{_pairs(model_spec.promotion.first_run_floor)}, min improvement {model_spec.promotion.min_improvement} at "
        f"significance {model_spec.promotion.significance}), rollout "
        f"{'shadow ' + str(model_spec.rollout.shadow.mirror_percent) + '% → ' if model_spec.rollout.shadow.enabled else ''}"
        f"{' → '.join(f'{p}%' for p in model_spec.rollout.steps)}, bakes {model_spec.rollout.bake_minutes:g} min",
        soft_wrap=True,
    )
    batches = make_batches(paths.root / "data", rows)
    for batch in batches.values():
        console.print(f"generated {escape(str(batch.path))}: {len(batch.frame):,} rows, {batch.label}", soft_wrap=True)

    stack = LocalStack(paths, port)
    scenario: Scenario | None = None
    failure: StageFailed | None = None
    interrupted = False
    previous = listen_for_stop(_interrupt)
    try:
        with console.status("starting Azurite…"):
            stack.start_storage()
        assert stack.azurite is not None
        console.print(
            f"Azurite: blob :{stack.azurite.blob_port}, queue :{stack.azurite.queue_port}, "
            f"table :{stack.azurite.table_port} (data in {escape(str(paths.azurite))})"
        )
        with console.status("starting devhost (loads function_app.py, the local Event Grid and ML service)…"):
            stack.start_host()
        console.print(
            f"devhost: {stack.base_url} (virtual clock; log {escape(str(paths.host_log))}). While the demo runs, "
            f"look around with: .venv/bin/perennial runs {MODEL} --host {stack.base_url} --key {stack.key}",
            soft_wrap=True,
        )
        scenario = Scenario(stack, model_spec, batches, console)
        scenario.started = started
        first = scenario.stage1_first_model()
        scenario.stage2_drift(first)
        scenario.stage3_corrupt()
        scenario.stage4_faulty()
        scenario.stage5_summary(paths)
    except StageFailed as exc:
        failure = exc
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:  # anything else still ends with the stage named, and with everything stopped
        number, title = (scenario.stage.number, scenario.stage.title) if scenario else (0, "set-up")
        failure = StageFailed(number, title, f"{type(exc).__name__}: {exc}")
        if not isinstance(exc, RuntimeError | ClientError | httpx.HTTPError | OSError):
            console.print_exception()  # not an error the demo knows: the traceback is for whoever fixes it
    finally:
        # Cleanup is not interruptible: a second Ctrl-C must not leave a host or a scoring server behind.
        with not_interrupted(previous), console.status("stopping devhost, its scoring servers and Azurite…"):
            notes = stack.stop()
        console.print(
            "stopped: devhost (SIGTERM; its ML service stopped the scoring servers) and Azurite"
            + (f"; {'; '.join(notes)}" if notes else "")
        )

    seconds = time.monotonic() - started
    if interrupted:
        console.print(
            f"[yellow]interrupted after {seconds:.0f} s[/yellow]; state kept in {escape(str(paths.root))}",
            soft_wrap=True,
        )
        raise typer.Exit(130)
    if failure is not None:
        console.print()
        console.print(
            f"[red bold]✗ stage {failure.stage} ({escape(failure.title)}) FAILED:[/red bold] {escape(failure.message)}",
            soft_wrap=True,
        )
        console.print(f"  host log: {escape(str(paths.host_log))}; state: {escape(str(paths.root))}", soft_wrap=True)
        raise typer.Exit(1)
    assert scenario is not None
    console.print()
    console.print(
        f"[green bold]✓ every stage did what it claims[/green bold] ({seconds:.0f} s); state in {escape(str(paths.root))}"
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _prepare(state: Path, spec: Path, console: Console) -> ModelSpec:
    """Check the spec, then wipe the state folder (only one the demo made) and copy the spec into it; exit 2
    on a bad spec or a folder that is not the demo's, with the previous demo's state untouched."""
    from perennial_cli.scenario import MODEL

    try:
        model = read_spec(spec)
    except SpecError as exc:
        for line in exc.problems:
            console.print(f"[red]✗[/red] {escape(line)}", soft_wrap=True)
        raise typer.Exit(2) from None
    if model.name != MODEL:
        console.print(
            f"[red]✗[/red] {escape(str(spec))}: the demo plays the model {MODEL!r}; set name: {MODEL}", soft_wrap=True
        )
        raise typer.Exit(2)
    # Only a folder the demo made (its marker) or the default one is wiped: `--state .perennial` must not take
    # `perennial host`'s key and histories with it.
    ours = (state / MARKER).exists() or state.resolve() == DEFAULT_STATE.resolve()
    if state.exists() and any(state.iterdir()) and not ours:
        console.print(
            f"[red]✗[/red] {escape(str(state))} is not empty and was not made by `perennial demo` (no {MARKER} "
            "file): choose another --state, or empty it yourself"
        )
        raise typer.Exit(2)
    shutil.rmtree(state, ignore_errors=True)
    models = StackPaths(state).models
    models.mkdir(parents=True)
    (state / MARKER).write_text("made by `perennial demo`; wiped at the start of every demo run\n")
    shutil.copyfile(spec, models / f"{MODEL}.yaml")
    return model


def _pairs(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in values.items())
