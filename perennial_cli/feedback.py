"""``perennial feedback``: check delayed-label files against a model and put them in ``feedback/<model>/``.

The live checks join labels with the predictions the endpoint recorded (by request id and row). A label they
cannot place is not an error to them: a binary label other than the positive class counts as negative, and a
multiclass label spelt by its value instead of its class index is not counted. So this command reads each file
with the app's own parser first and refuses one whose labels would be miscounted, naming the values and the fix.
Storage is found as ``perennial upload`` finds it (AzureWebJobsStorage, else the running ``perennial up``).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from perennial_cli.score import REQUEST_ID
from perennial_cli.up import DEFAULT_STATE
from perennial_cli.upload import (
    ModelsOption,
    StateOption,
    blob_names,
    fail,
    first_line,
    known_models,
    storage_for,
    storage_hint,
)
from shared.spec import ModelSpec

#: How many offending label values a refusal lists.
SHOWN = 5


def feedback(
    files: list[Path] = typer.Argument(
        ..., metavar="FILE", help="Label files: .csv with a request_id,label[,row] header, or .jsonl objects."
    ),
    model: str = typer.Option(..., "--model", "-m", help="The model the labels are for, e.g. fraud."),
    folder: str | None = typer.Option(
        None,
        "--folder",
        show_default=False,
        help="A sub-folder under feedback/<model>/. Default: by-upload-day/<the upload's UTC day>, so the live checks "
        "list only the days of their window; --folder '' puts the files at the top.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a label file of the same name."),
    state: StateOption = DEFAULT_STATE,
    models: ModelsOption = Path("models"),
) -> None:
    """Check label files against MODEL and upload them to feedback/<model>/, where the live checks read them.

    Each label names a scored request by the id the endpoint recorded (the client's x-ms-client-request-id or x-request-id header) and, for a multi-row request, the row (default 0). A binary label is positive when it is the spec's data.positive_class; a multiclass label is the class index score.py answers. Files whose labels the live checks would miscount are refused before anything is uploaded (exit 2).

    Labels count by upload time: the schedule's live-performance check (triggers.performance_drop, over the last 7 days) and a canary bake in progress read the ones uploaded in their window.

    Example: perennial feedback chargebacks-2026-12-01.csv --model fraud
    """
    from azure.core.exceptions import AzureError, ResourceExistsError

    from shared.feedback import FEEDBACK_SUFFIXES
    from shared.storage import FEEDBACK, BlobStore, StorageError, feedback_day_folder

    out = Console(highlight=False)
    known = known_models(models)
    if model not in known:
        fail(
            f"no model spec named {model!r} in {models}",
            f"use one of: {', '.join(sorted(known)) or 'none'}; or pass the host's spec folder with --models DIR",
            2,
        )
    for path in files:
        if path.is_file() and not path.name.endswith(FEEDBACK_SUFFIXES):
            fail(f"{path}: not a .csv or .jsonl file", "write labels as CSV (request_id,label[,row]) or JSON lines", 2)
    day = feedback_day_folder(datetime.now(UTC)) if folder is None else folder
    names = blob_names(files, FEEDBACK, model, day, known, "the label files")
    counted = {path: _checked(path, model, known[model]) for path in files}
    settings, where = storage_for(state)
    relative = ""
    try:
        store = BlobStore.from_settings(settings, known)
        for path, relative in names.items():
            with path.open("rb") as data:
                store.upload_feedback(model, relative, data, overwrite=overwrite)
            labels, skipped = counted[path]
            more = f" ({skipped:,} unreadable row(s) skipped: no request_id or label, or a bad row)" if skipped else ""
            out.print(
                f"[green]✓[/green] {escape(str(path))}: {labels:,} label(s){escape(more)} → "
                f"feedback/{escape(model)}/{escape(relative)}",
                soft_wrap=True,
            )
    except ResourceExistsError:
        fail(f"feedback/{model}/{relative} exists already", "give the file another name, or pass --overwrite")
    except (StorageError, AzureError, OSError) as exc:  # the files listed above it went up; this one did not
        fail(f"could not upload feedback/{model}/{relative} to {where}: {first_line(exc)}", storage_hint(exc, where))
    out.print(
        "Labels count by upload time: the schedule's live-performance check (triggers.performance_drop, last 7 days) "
        f"and any canary bake in progress read them. Follow with: perennial runs {escape(model)}",
        soft_wrap=True,
    )


def _checked(path: Path, model: str, spec: ModelSpec) -> tuple[int, int]:
    """(labels, rows skipped) of one file, read as the app reads feedback; exits 2 when it cannot be read or its
    labels would be miscounted."""
    import csv

    from shared.feedback import FeedbackHeaderError, declared_classes, feedback_rows, label_problems

    values: Counter[str] = Counter()
    unrecordable: list[str] = []  # ids the endpoint cannot have recorded: no prediction will ever join them
    skipped = 0
    try:
        with path.open("rb") as data:
            for label in feedback_rows(data, path.name):
                if label is None:
                    skipped += 1
                    continue
                values[label.label] += 1
                if not REQUEST_ID.fullmatch(label.request_id):
                    unrecordable.append(label.request_id)
    except FeedbackHeaderError as exc:
        fail(f"{path}: {exc}", "the first line must name the columns: request_id,label (and row, optional)", 2)
    except (UnicodeDecodeError, csv.Error) as exc:
        fail(f"{path} is not UTF-8 CSV / JSON lines: {first_line(exc)}", "save it as UTF-8 text", 2)
    if not values:
        unreadable = f": all {skipped:,} row(s) are unreadable" if skipped else ""
        fail(
            f"{path} holds no label{unreadable}",
            "each row needs a request_id and a label, and a row column, when there is one, holds the row's place in "
            "the scored request: empty or a whole number from 0",
            2,
        )
    if unrecordable:
        shown = ", ".join(repr(i[:40]) for i in unrecordable[:SHOWN])
        fail(
            f"{path}: {len(unrecordable):,} request id(s) the endpoint cannot have recorded, e.g. {shown}",
            "a label names the id the client sent (1-128 ASCII letters, digits and . _ : -); the endpoint keeps "
            "any other as a new id, so these labels would never be joined",
            2,
        )
    problems = label_problems(values.elements(), spec.data, spec.task)
    if problems:
        lines = "; ".join(f"{p.value!r} ({p.count:,} row(s)): {p.why}" for p in problems[:SHOWN])
        more = f"; and {len(problems) - SHOWN} more value(s)" if len(problems) > SHOWN else ""
        if spec.task == "multiclass":
            classes = declared_classes(spec.data.column(spec.data.label))
            index = ", ".join(f"{i}={c}" for i, c in enumerate(classes[:20])) + (", …" if len(classes) > 20 else "")
            hint = (
                f"write each label as its class index ({index})" if classes else "write each label as its class index"
            )
            hint += ": the position of the class in the model's classes (preprocessing.json), as score.py answers"
        else:
            hint = (
                f"write the positive class as {spec.data.positive_class!r} and the negative one as the label column "
                "spells it in the training data"
            )
        fail(f"{path}: labels of {model!r} the live checks would miscount: {lines}{more}", hint, 2)
    return sum(values.values()), skipped
