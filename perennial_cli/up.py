"""``perennial up``: Perennial on this machine, in the foreground, for the command line to talk to.

Azurite (storage, kept under ``--state``) with Perennial's containers and tables, then devhost serving
function_app.py unmodified with the local Event Grid and the local ML service, the same stack
``perennial demo`` plays its scenario on (:class:`perennial_cli.localstack.LocalStack`), but with the
user's own model specs, a real clock, and state that is kept between runs. It runs until Ctrl-C or
SIGTERM (exit 0) or until the host dies (exit 1); either way everything it started is stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from devhost.keys import load_or_create_keys
from perennial_cli.azurite import AZURITE, free_port, port_is_free
from perennial_cli.client import DEFAULT_HOST_URL, LOCAL_KEY_FILE
from perennial_cli.localstack import LocalStack, StackError, StackPaths, listen_for_stop, not_interrupted
from shared.spec import SpecError, load_specs

DEFAULT_STATE = Path(".perennial/local")
#: Held (flock) while a `perennial up` runs on a state folder: two Azurites on one folder would corrupt it.
LOCK_FILE = "up.lock"
SETUP_HINT = "run `make setup` (it installs .venv and Azurite from package-lock.json)"


class _Stop(Exception):
    """Ctrl-C or SIGTERM: stop everything and exit 0."""


def up(
    port: int = typer.Option(
        7071,
        "--port",
        min=0,
        max=65535,
        help="The host's port on 127.0.0.1 (0 picks a free one; the CLI's default is 7071).",
    ),
    state: Path = typer.Option(
        DEFAULT_STATE,
        "--state",
        help="State folder, kept between runs: azurite/ (blobs, run registry), state/ (jobs, registered "
        "models, endpoints), devhost/ (durable histories), logs/host.log.",
    ),
    models: Path = typer.Option(Path("models"), "--models", help="The folder of model specs (*.yaml) to serve."),
    clock: str = typer.Option(
        "real", "--clock", help="real, or virtual: time stands still until POST /admin/clock moves it."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not follow the host's log on the terminal."),
) -> None:
    """Run Perennial locally, in the foreground, until Ctrl-C: storage, the app and the local ML service.

    It starts Azurite (storage on loopback ports; data kept under --state), creates Perennial's containers and tables, then devhost (the Functions host, running function_app.py unmodified) with the local Event Grid and the local ML service (training jobs, model registry, online endpoints), serving the specs in --models. It prints the host URL, the function key and commands to try, then follows the host's log.

    The function key is the local one in .perennial/devhost/function_key (made on first use, shared with `perennial host`), so `perennial models`, `perennial retrain fraud`, … run from this folder find it by themselves.

    Ctrl-C (or SIGTERM) stops the host, cancels any training job still running, stops the scoring servers and Azurite, and exits 0. If the host dies, everything else is stopped and it exits 1, naming the host log.

    Example: perennial up   (then, in another terminal: perennial models)
    """
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # followed through a pipe (| tee), each line shows at once
    console = Console(highlight=False)
    if clock not in ("real", "virtual"):
        _fail(f"--clock {clock!r} must be 'real' or 'virtual'", code=2)
    names = _check_models(console, models)
    _check_azurite()
    if port == 0:
        port = free_port()
    elif not port_is_free(port):
        _fail(
            f"port {port} on 127.0.0.1 is in use (another `perennial up`, `perennial host` or `make demo`?)",
            "stop whatever listens there, or choose another --port (then pass --host to the commands)",
        )
    # The local key the CLI reads by itself, made exactly as devhost makes it when it has none.
    try:
        key = load_or_create_keys(LOCAL_KEY_FILE.parent, env={})[0][0]
    except OSError as exc:
        _fail(f"cannot read or write the local key {LOCAL_KEY_FILE}: {exc}", "run from a folder you can write to")

    paths = StackPaths(state, models_folder=models)
    with _locked(state):
        stack = LocalStack(paths, port, key=key, clock=clock)
        code = _serve(console, stack, names, quiet)
    if code:
        raise typer.Exit(code)


def _serve(console: Console, stack: LocalStack, names: list[str], quiet: bool) -> int:
    """Start the stack, follow it until a stop signal or a death, stop it; the exit code."""
    paths = stack.paths
    previous = listen_for_stop(_raise_stop)
    code = 0
    try:
        with console.status("starting Azurite and creating Perennial's containers and tables…"):
            stack.start_storage()
        with console.status(f"starting devhost on {stack.base_url} (loads function_app.py and the local ML service)…"):
            stack.start_host()
        _banner(console, stack, names, quiet)
        code = _follow(stack, paths.host_log.stat().st_size, quiet)
    except _Stop:
        pass
    except Exception as exc:  # whatever failed, it is reported and everything started so far is stopped
        known = isinstance(exc, StackError | RuntimeError | OSError)
        _err().print(f"[red]✗[/red] could not start: {escape(str(exc) if known else repr(exc))}", soft_wrap=True)
        if stack.process is not None:
            _print_tail(stack)
        code = 1
    finally:
        # Stopping is not interruptible: a second Ctrl-C must not leave a host, a job or Azurite behind.
        with not_interrupted(previous), console.status("stopping devhost, its scoring servers and Azurite…"):
            notes = stack.stop()
    console.print("stopped: devhost, the local ML service and Azurite" + (f"; {'; '.join(notes)}" if notes else ""))
    return code


def _follow(stack: LocalStack, offset: int, quiet: bool) -> int:
    """Print the host log as it grows (unless ``quiet``) until a stop signal (raises _Stop) or a death (1)."""
    assert stack.process is not None
    assert stack.azurite is not None
    with stack.paths.host_log.open("rb") as log:
        log.seek(offset)
        while True:
            if not quiet:
                _copy_new_lines(log)
            if stack.process.poll() is not None:
                if not quiet:
                    _copy_new_lines(log)
                _err().print(
                    f"[red]✗[/red] devhost exited with {stack.process.returncode}; its log: "
                    f"{escape(str(stack.paths.host_log))}",
                    soft_wrap=True,
                )
                if quiet:
                    _print_tail(stack)
                return 1
            if stack.azurite.process.poll() is not None:
                _err().print(
                    f"[red]✗[/red] Azurite exited with {stack.azurite.process.returncode}: the app has no storage "
                    f"(its data is in {escape(str(stack.paths.azurite))})",
                    soft_wrap=True,
                )
                return 1
            time.sleep(0.25)


def _copy_new_lines(log: IO[bytes]) -> None:
    for line in iter(log.readline, b""):
        sys.stdout.write(line.decode(errors="replace"))
    sys.stdout.flush()


def _banner(console: Console, stack: LocalStack, names: list[str], quiet: bool) -> None:
    assert stack.azurite is not None
    paths = stack.paths
    flags = "" if stack.base_url == DEFAULT_HOST_URL else f" --host {stack.base_url}"
    model = names[0] if names else "MODEL"
    clock = "real clock" if stack.clock == "real" else "virtual clock: POST /admin/clock moves it"
    console.print()
    console.print(f"[green bold]Perennial is up[/green bold] at [bold]{stack.base_url}[/bold] ({clock})")
    console.print(
        f"  function key  {stack.key}  (in {LOCAL_KEY_FILE}: commands run from this folder find it)", soft_wrap=True
    )
    console.print(
        f"  models        {escape(', '.join(names) or 'none')} from {escape(str(paths.models))}", soft_wrap=True
    )
    console.print(
        f"  storage       Azurite blob :{stack.azurite.blob_port}, queue :{stack.azurite.queue_port}, "
        f"table :{stack.azurite.table_port}; data in {escape(str(paths.azurite))}",
        soft_wrap=True,
    )
    console.print(f"                AzureWebJobsStorage={stack.azurite.connection_string}", soft_wrap=True)
    console.print(
        f"                new data: a CSV or Parquet batch in landing/{escape(model)}/ starts a run "
        f"(perennial upload FILE --model {escape(model)})",
        soft_wrap=True,
    )
    console.print(f"  state         {escape(str(paths.root))}; host log {escape(str(paths.host_log))}", soft_wrap=True)
    console.print()
    console.print("Try, in another terminal:")
    for command in (
        "models",
        f'retrain {model} --reason "first model"',
        f"runs {model}",
    ):
        console.print(f"  .venv/bin/perennial {escape(command)}{flags}", soft_wrap=True)
    console.print(f"From another folder, add: --host {stack.base_url} --key {stack.key}", soft_wrap=True)
    console.print("Ctrl-C stops everything." + ("" if quiet else " The host's log follows."))
    console.print()


def _check_models(console: Console, models: Path) -> list[str]:
    if not models.is_dir():
        _fail(
            f"--models {models}: no such folder",
            "run from the repository root (it has models/), or pass --models FOLDER",
            code=2,
        )
    try:
        names = sorted(load_specs(models))
    except SpecError as exc:
        for line in exc.problems:
            _err().print(f"[red]✗[/red] {escape(line)}", soft_wrap=True)
        _fail(f"the specs in {models} are not valid", "fix them (`perennial spec check FILE`)", code=2)
    if not names:
        console.print(
            f"[yellow]![/yellow] no model specs (*.yaml) in {escape(str(models))}: the app serves none", soft_wrap=True
        )
    return names


def _check_azurite() -> None:
    if not AZURITE.exists():
        _fail(f"Azurite is not installed ({AZURITE} is missing)", SETUP_HINT)
    if shutil.which("node") is None:
        _fail("node is not on PATH (Azurite runs on it)", "install Node.js 18+, then run `make setup`")


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    """Hold ``state``/up.lock for the block; exit 1 if another `perennial up` holds it."""
    state.mkdir(parents=True, exist_ok=True)
    with (state / LOCK_FILE).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            _fail(
                f"another `perennial up` (pid {holder}) is running on {state}",
                "stop it first, or give this one another --state",
            )
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)  # the lock itself goes with the file descriptor


def _print_tail(stack: LocalStack) -> None:
    tail = stack.log_tail(20)
    if tail:
        _err().print(f"last lines of {escape(str(stack.paths.host_log))}:", soft_wrap=True)
        _err().print(escape(tail), soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _fail(message: str, hint: str = "", code: int = 1) -> NoReturn:
    _err().print(f"[red]✗[/red] {escape(message)}", soft_wrap=True)
    if hint:
        _err().print(f"  fix: {escape(hint)}", soft_wrap=True)
    raise typer.Exit(code)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop
