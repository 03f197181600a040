"""``perennial upload``: put data files in ``landing/<model>/``, where new data starts a run.

The storage is the app's own: ``AzureWebJobsStorage`` (a connection string, or the identity-based
``AzureWebJobsStorage__blobServiceUri`` / ``__accountName`` settings, signed in as you with the
Azure SDK's default credential), else the Azurite of a running ``perennial up`` (it records its
connection string in its state folder while it runs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from perennial_cli.azurite import storage_answers
from perennial_cli.localstack import StackPaths
from perennial_cli.up import DEFAULT_STATE
from shared.blobpaths import BlobNameError, validate_blob_name
from shared.settings import SettingsError, StorageSettings, storage_settings
from shared.spec import ModelSpec, SpecError, load_specs

CONTENT_TYPES = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}
START_HINT = "start `perennial up` (from this folder), or set AzureWebJobsStorage to the storage account's settings"


#: ``--state`` and ``--models`` of the commands that write to the app's storage (upload, feedback).
StateOption = Annotated[
    Path,
    typer.Option("--state", help="The state folder of the `perennial up` to upload to, without AzureWebJobsStorage."),
]
ModelsOption = Annotated[Path, typer.Option("--models", help="The folder of model specs (*.yaml).")]


def upload(
    files: list[Path] = typer.Argument(..., metavar="FILE", help="CSV or Parquet files, e.g. batch-001.csv."),
    model: str = typer.Option(..., "--model", "-m", help="The model whose landing folder gets them, e.g. fraud."),
    folder: str = typer.Option(
        "", "--folder", help="A sub-folder under landing/<model>/, e.g. 2026/11 (default: none)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a blob of the same name (a new version, which trains again)."
    ),
    state: StateOption = DEFAULT_STATE,
    models: ModelsOption = Path("models"),
) -> None:
    """Upload data files to landing/<model>/: once no new file has landed for a while, a run trains on them.

    The run starts when no new batch has landed for the spec's triggers.debounce.quiet_seconds (120 s unless the spec says otherwise), so a burst of files trains once. A file that breaks the model's data contract is quarantined with a report, not trained on.

    Check a file first with: perennial validate FILE --spec models/<model>.yaml

    Example: perennial upload batch-001.csv --model fraud
    """
    from azure.core.exceptions import AzureError, ResourceExistsError

    from shared.storage import LANDING, BlobStore, StorageError

    out = Console(highlight=False)
    known = known_models(models)
    if model not in known:
        fail(
            f"no model spec named {model!r} in {models}",
            f"use one of: {', '.join(sorted(known)) or 'none'}; or, if the host reads its specs from another folder "
            "(perennial up --models DIR), pass that folder with --models DIR",
            2,
        )
    for path in files:
        if path.is_file() and path.suffix.lower() not in CONTENT_TYPES:
            fail(f"{path}: not a .csv or .parquet file", "Perennial reads CSV and Parquet batches", 2)
    names = blob_names(files, LANDING, model, folder, known, "the data files")
    settings, where = storage_for(state)
    relative = ""
    try:
        store = BlobStore.from_settings(settings, known)
        for path, relative in names.items():
            size = path.stat().st_size
            out.print(
                f"uploading {escape(str(path))} ({size:,} bytes) to landing/{escape(model)}/{escape(relative)}…",
                soft_wrap=True,
            )
            with path.open("rb") as data:
                ref = store.upload_landing(
                    model, relative, data, content_type=CONTENT_TYPES[path.suffix.lower()], overwrite=overwrite
                )
            out.print(f"  [green]✓[/green] {escape(ref.url)} eTag {escape(ref.etag)}", soft_wrap=True)
    except ResourceExistsError:
        fail(
            f"landing/{model}/{relative} exists already",
            "give the file another name (each batch is a new file), or pass --overwrite to replace it",
        )
    except (StorageError, AzureError, OSError) as exc:  # the files listed above it went up; this one did not
        fail(f"could not upload landing/{model}/{relative} to {where}: {first_line(exc)}", storage_hint(exc, where))
    out.print(escape(when_the_run_starts(known[model], models / f"{model}.yaml")), soft_wrap=True)


def blob_names(
    files: list[Path], container: str, model: str, folder: str, known: Mapping[str, ModelSpec], what: str
) -> dict[Path, str]:
    """Each file's name under ``<container>/<model>/`` (``folder``/its name), checked before storage is touched:
    exits 2 for a file that is not there, two files with one name, or a name the app would refuse."""
    names: dict[Path, str] = {}
    for path in files:
        if not path.is_file():
            fail(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}", f"give {what} to upload", 2)
        if path.stat().st_size == 0:  # the app would never read it: an empty blob trains nothing and starts no run
            fail(f"{path}: the file is empty", f"give {what} to upload: a file with a header and rows", 2)
        names[path] = "/".join(part for part in (folder.strip("/"), path.name) if part)
        if list(names.values()).count(names[path]) > 1:
            fail(
                f"two of the files would both be {container}/{model}/{names[path]}",
                "rename one, or upload them apart",
                2,
            )
        try:
            validate_blob_name(f"{model}/{names[path]}", known, container)
        except BlobNameError as exc:
            fail(f"{container}/{model}/{names[path]}: {exc.message}", exc.hint, 2)
    return names


def when_the_run_starts(spec: ModelSpec, path: Path) -> str:
    """What happens next, as the model's coordinator does it: the run waits until the landing folder is quiet."""
    debounce = spec.triggers.debounce
    follow = f"`perennial models` says when; follow the run with: perennial runs {spec.name}"
    if not debounce.quiet_seconds:
        return f"A run starts within seconds (triggers.debounce.quiet_seconds is 0 in {path}). {follow}"
    return (
        f"A run starts once no new batch has landed in landing/{spec.name}/ for {debounce.quiet_seconds:g} s "
        f"(triggers.debounce.quiet_seconds in {path}; at the latest {debounce.max_wait_seconds:g} s after the "
        f"first batch). {follow}"
    )


def known_models(models: Path) -> dict[str, ModelSpec]:
    if not models.is_dir():
        what = "is a file, not a folder" if models.exists() else "does not exist"
        fail(f"the models folder {models} {what}", "pass --models with the folder of the model specs (*.yaml)", 2)
    try:
        return load_specs(models)
    except SpecError as exc:
        more = f" (and {len(exc.problems) - 1} more problem(s))" if len(exc.problems) > 1 else ""
        fail(
            f"the specs in {models} cannot be read: {exc.problems[0]}{more}",
            f"fix the spec (perennial spec check {models} lists every problem), or pass --models FOLDER for the "
            "app's own specs",
            2,
        )


def storage_for(state: Path) -> tuple[StorageSettings, str]:
    """The app's storage settings from the environment, else the running `perennial up`'s Azurite."""
    # A setting that is set but empty (`AzureWebJobsStorage=` in a shell) names nothing.
    if any((name == "AzureWebJobsStorage" or name.startswith("AzureWebJobsStorage__")) and value.strip()
           for name, value in os.environ.items()):  # fmt: skip
        try:
            return storage_settings(os.environ), FROM_SETTINGS
        except SettingsError as exc:
            fail(f"AzureWebJobsStorage is not usable: {exc.problems[0]}", "fix the setting, or unset it", 2)
    recorded = StackPaths(state).storage_connection
    if recorded.is_file():
        connection = recorded.read_text(encoding="utf-8").strip()
        if not storage_answers(connection):  # left behind by a `perennial up` that was killed outright
            fail(f"the `perennial up` that ran on {state} is gone (its Azurite does not answer)", START_HINT)
        return StorageSettings(connection, None, None, None, None), f"the Azurite of `perennial up` ({state})"
    fail(f"no storage to upload to: AzureWebJobsStorage is not set and no `perennial up` runs on {state}", START_HINT)


#: ``storage_for``'s name for storage the environment's settings name.
FROM_SETTINGS = "the storage named by AzureWebJobsStorage"


def storage_hint(exc: BaseException, where: str) -> str:
    """What to do about a failed upload: the local stack's hint, unless the environment named the storage, whose
    settings (or the signed-in identity, for identity-based settings) are then what to check."""
    from azure.core.exceptions import ClientAuthenticationError

    if where != FROM_SETTINGS:
        return START_HINT
    if isinstance(exc, ClientAuthenticationError):
        return (
            "sign in as an identity that holds Storage Blob Data Contributor on the account (az login; "
            "AzureWebJobsStorage__accountName settings use DefaultAzureCredential), or set AzureWebJobsStorage to the "
            "account's connection string; unset it to use `perennial up`"
        )
    return (
        "check AzureWebJobsStorage (the account name or connection string, and that this machine can reach the "
        "account), or unset it to upload to `perennial up`"
    )


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def fail(message: str, hint: str, code: int = 1) -> NoReturn:
    err = Console(stderr=True, highlight=False)
    err.print(f"[red]✗[/red] {escape(message)}", soft_wrap=True)
    err.print(f"  fix: {escape(hint)}", soft_wrap=True)
    raise typer.Exit(code)
