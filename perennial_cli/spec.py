"""``perennial spec``: validate model spec files, and write what jobs read from them (contract.json)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from shared.spec import ModelSpec, SpecError, endpoint_clashes, ignored_spec_file, inner_model, load_spec

app = typer.Typer(help="Work with model specs (models/<name>.yaml).", no_args_is_help=True)


def _spec_files(paths: list[Path]) -> list[Path]:
    """The paths as given, a directory replaced by its ``*.yaml`` and ``*.yml`` files (sorted: the host reads the
    first and refuses to start beside the second); a directory with neither stays, to be reported."""
    files: list[Path] = []
    for path in paths:
        found = sorted(p for p in path.glob("*.y*ml") if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))
        files += (found if path.is_dir() else []) or [path]
    return files


@app.command("check")
def check(
    paths: list[Path] = typer.Argument(
        ..., metavar="SPEC", help="Spec files to validate, e.g. models/*.yaml; a directory checks every *.yaml in it."
    ),
) -> None:
    """Validate model specs; print every problem with its field and fix. Exit 1 if any spec is invalid.

    Example: perennial spec check models (or models/*.yaml, or one file)
    """
    out, err = Console(), Console(stderr=True)
    failed = 0
    valid: list[tuple[Path, ModelSpec]] = []
    for path in _spec_files(paths):
        if path.is_dir():
            failed += 1
            err.print(
                f"[red]✗[/red] {escape(str(path))}: no *.yaml spec in this directory", highlight=False, soft_wrap=True
            )
            continue
        if path.exists() and path.suffix != ".yaml":  # the host would pass it over (and refuse to start beside it)
            failed += 1
            err.print(f"[red]✗[/red] {escape(ignored_spec_file(path))}", highlight=False, soft_wrap=True)
            continue
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failed += 1
            for line in exc.problems:
                err.print(f"[red]✗[/red] {escape(line)}", highlight=False, soft_wrap=True)
            continue
        valid.append((path, spec))
        out.print(
            f"[green]✓[/green] {escape(str(path))}: model {spec.name!r} ({spec.task}, "
            f"{len(spec.data.columns)} columns, "
            f"rollout {'/'.join(map(str, spec.rollout.steps))}%)",
            highlight=False,
            soft_wrap=True,
        )
    # What the host checks across its models folder: each model needs an endpoint of its own.
    for problem in endpoint_clashes(valid):
        failed += 1
        err.print(f"[red]✗[/red] {escape(problem)}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(code=1)


def load_spec_or_exit(path: Path, code: int) -> ModelSpec:
    """The spec at ``path``; else each of its problems on stderr (they name the field and the fix) and exit ``code``."""
    try:
        return load_spec(path)
    except SpecError as exc:
        err = Console(stderr=True)
        for line in exc.problems:
            err.print(f"[red]✗[/red] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=code) from None


@app.command("contract")
def contract(
    path: Path = typer.Argument(..., metavar="SPEC", help="The model's spec, e.g. models/fraud.yaml."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write contract.json here instead of printing it."),
) -> None:
    """Print a spec's data contract as contract.json, exactly as the platform stages it for jobs.

    train.py and evaluate.py read it (--contract) when you run them by hand. Exit 1 if the spec is invalid.

    Example: perennial spec contract models/fraud.yaml -o contract.json
    """
    err = Console(stderr=True)
    spec = load_spec_or_exit(path, code=1)
    from shared.jobs import job_contract  # loads the storage SDKs: only for this command

    text = job_contract(spec)  # what shared.jobs stages for a job
    if output is None:
        typer.echo(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(
            f"[red]✗[/red] {escape(str(output))}: cannot write it ({exc.strerror}); pass -o a writable file path",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1) from None
    err.print(
        f"wrote {escape(str(output))}: the data contract of model {spec.name!r} ({len(spec.data.columns)} columns)",
        highlight=False,
        soft_wrap=True,  # a path cut mid-name cannot be copied
    )


def _reference_rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows: list[str] = []
    for field_name, info in model.model_fields.items():
        name = info.alias or field_name  # as the YAML spells it (Guardrail's class_ is `class`)
        inner = inner_model(info.annotation)
        annotation = str(info.annotation)
        if inner is not None:
            default = "required" if info.is_required() else ""
        else:
            default = "required" if info.is_required() else f"`{info.get_default(call_default_factory=True)!r}`"
        rows.append(f"| `{prefix}{name}` | {default} | {info.description or ''} |")
        if inner is not None:
            child = prefix + name + ("[]." if "list[" in annotation else ".<name>." if "dict[" in annotation else ".")
            rows += _reference_rows(inner, child)
    return rows


def reference_markdown() -> str:
    """The field reference of a model spec, generated from shared/spec.py (docs/model-spec.md is this text)."""
    header = [
        "# Model spec reference",
        "",
        "<!-- Generated by `perennial spec docs > docs/model-spec.md`; a test keeps it in sync with shared/spec.py. -->",
        "",
        "One YAML file per model under `models/`, named `<name>.yaml` (a `.yml` file is refused: the host would not",
        "read it). Unknown keys and keys given twice are errors.",
        "`perennial spec check models/*.yaml` validates them; every error names the file, the field, the value",
        "and the fix. The description of each field below is also the fix hint shown when the field is wrong.",
        "See `models/fraud.yaml` for a complete, realistic example.",
        "",
        "Invariants checked beyond each field's own range: rollout steps strictly increase and end at 100;",
        "column names are unique; the label and the key are declared columns; at least one feature column",
        "(not the label, not a timestamp); `positive_class` is a value the label can take (one of its",
        "categories, within its range; for a `bool` label one of true/false, 1/0, yes/no, y/n or t/f in any",
        "case, `true` being the usual choice); ranges only on numeric columns and `min <= max`; categories only",
        "on category/string columns, and not an empty list; each search dimension has either `values` or",
        "`min`/`max` (log scale needs `min > 0`); `training.params` and `search_space` name train.py options",
        "and give values its parser accepts (a whole number where it wants one, within its bounds, one of its",
        "choices); several processes need `distribution: pytorch`; the debounce quiet window fits inside the",
        "max wait; guardrail and `first_run_floor` metrics are ones the evaluation reports, and a guardrail's",
        "`class` is a class the label declares (precision, recall or f1 only, one guardrail per metric and",
        "class); `holdout_fraction` is not set per candidate; model and endpoint names are valid",
        "Azure ML names of 3-32 characters, endpoint names (the default `<name>-ep` included) of 3-25 (in",
        "Azure the app appends `-<PERENNIAL_ENDPOINT_SUFFIX>`), and the compute name of 3-24. Across the",
        "models directory, each model has its own endpoint (a rollout sets the endpoint's whole traffic",
        "map); `perennial spec check models` checks that too.",
        "",
        "How values are read (validation and training alike; the scoring script takes the same values as JSON,",
        "with null for missing): CSV files are UTF-8 and comma-separated, with a header row. `float` and `int`",
        "are numbers in ASCII digits (`1e-3` too; an `int` must be whole; an infinity such as `inf`, `0x17`, `1_000`",
        "and digits of other scripts are a `type_mismatch`); `bool`",
        "is true/false, 1/0, yes/no, y/n or t/f in any case; `timestamp` is ISO 8601 (`2026-11-30T08:00:00`, a",
        "date alone, or with `Z` or an offset, converted to UTC, or a Parquet timestamp or date; epoch seconds,",
        "as text or as a Parquet number, and `11/30/2026` are a `type_mismatch`); `string` and `category` are",
        "the text as written. Missing: the empty field in",
        "every column; in a CSV `float`, `int`, `bool` or `timestamp` column also pandas' missing tokens (`NA`,",
        "`N/A`, `null`, `NULL`, `NaN`, `nan`, `None`, `<NA>`, `#N/A`, ...) and a float NaN, while in a `string`",
        "or `category` column `NA` or `null` is a value (the region code NA is a category), except in the label,",
        "where `NA`, `null` or an empty cell is an unlabelled row in any file. Parquet decimals are read as",
        "numbers.",
        "",
        "Label classes are read as training reads them: `1`, `1.0`, `01`, `true` are one class, a text label's",
        "` yes` (spaces around it) is not `yes`, and a `bool` label reads every bool spelling. A batch whose",
        "labels training would refuse is a `label_class` error, whatever `data.severity` says: a value outside",
        "the label's declared classes (its `categories`, or a multiclass `int` label's `min`..`max`), or a third",
        "class in the label of a binary model, even one whose `categories` declare three (fix the labels, or",
        "set `task: multiclass`). Validation judges each batch on its own; a run whose batches each pass but",
        "together cannot train a binary model (one of `yes`/`no` and one of `yes`/`maybe`, or no row of the",
        "positive class in any) ends `no_valid_data` before any training job, naming the batches.",
        "",
        "| field | default | meaning |",
        "|---|---|---|",
    ]
    return "\n".join([*header, *_reference_rows(ModelSpec, "")]) + "\n"


@app.command("docs")
def docs() -> None:
    """Print the spec field reference as Markdown (the source of docs/model-spec.md)."""
    typer.echo(reference_markdown(), nl=False)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of a model spec (for editor completion, e.g. yaml-language-server)."""
    typer.echo(json.dumps(ModelSpec.model_json_schema(), indent=2))
