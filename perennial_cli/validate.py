"""``perennial validate``: check a data file against a model's data contract (and drift vs a reference).

Exit codes: 0 the batch passes (warnings allowed), 1 it fails a hard check, 2 the file is missing, a
directory or unreadable, the spec or the reference profile cannot be used, or the profile cannot be
written (``--profile-out``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from perennial_cli.spec import load_spec_or_exit
from perennial_cli.upload import CONTENT_TYPES

if TYPE_CHECKING:  # numpy, pyarrow and scipy load when a file is validated, not with every command's --help
    from shared.drift import DriftReport
    from shared.profile import DatasetProfile
    from shared.validation import Finding, ValidationReport


def validate(
    path: Path = typer.Argument(
        ..., metavar="FILE", help="A CSV or Parquet file (format from the extension or the PAR1 magic)."
    ),
    spec: Path = typer.Option(
        ..., "--spec", help="The model spec whose data contract applies, e.g. models/fraud.yaml."
    ),
    reference: Path | None = typer.Option(
        None, "--reference", help="A reference profile (JSON from --profile-out) to check drift against."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
    profile_out: Path | None = typer.Option(
        None, "--profile-out", help="Write this batch's profile (JSON) here, e.g. to use as a reference later."
    ),
) -> None:
    """Validate and profile a CSV/Parquet file against a spec's data contract. Exit 1 if a hard check fails.

    Exit 2 if the file, the spec, the reference or the profile path cannot be used.

    Example: perennial validate batch-001.csv --spec models/fraud.yaml
    """
    from shared.drift import compare
    from shared.profile import DatasetProfile, ProfileError
    from shared.validation import validate as validate_batch

    err = Console(stderr=True)
    _check_readable(err, path)
    model = load_spec_or_exit(spec, code=2)
    if profile_out is not None and profile_out.is_dir():  # before a long validation, not after it
        _unwritable(err, profile_out, "it is a directory; pass a file path such as profile.json")
    ref_profile: DatasetProfile | None = None
    if reference is not None:
        try:
            ref_profile = DatasetProfile.from_json(reference.read_bytes())
        except OSError as exc:
            err.print(f"[red]✗[/red] {reference}: cannot read the reference profile ({exc.strerror})", highlight=False)
            raise typer.Exit(code=2) from None
        except ProfileError as exc:
            err.print(f"[red]✗[/red] {reference}: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    report = validate_batch(path, model.data, reference=ref_profile, task=model.task)
    drift: DriftReport | None = None
    if ref_profile is not None and report.profile is not None:
        features = [c.name for c in model.data.feature_columns]
        drift = compare(ref_profile, report.profile, model.triggers.drift, columns=features)
    write_error: str | None = None
    written = profile_out
    if profile_out is not None and report.profile is not None:
        try:
            profile_out.parent.mkdir(parents=True, exist_ok=True)
            profile_out.write_text(report.profile.to_json(), encoding="utf-8")
        except OSError as exc:
            write_error, written = exc.strerror or str(exc), None

    if as_json:
        document = {"validation": report.to_dict(include_profile=False), "drift": drift.to_dict() if drift else None}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        _print(report, drift, written)
    if path.suffix.lower() not in CONTENT_TYPES:  # read by its bytes here; the app takes landing blobs by name
        err.print(
            f"note: {escape(path.name)} is not named .csv or .parquet, which `perennial upload` and the app require: "
            "rename it before uploading",
            highlight=False,
            soft_wrap=True,
        )
    if write_error is not None:  # the report above still stands; the exit code says the command did not finish
        _unwritable(err, profile_out, f"{write_error}; pass --profile-out a writable file path")
    if not report.ok:
        raise typer.Exit(code=1)


def _check_readable(err: Console, path: Path) -> None:
    """Exit 2 (a usage error, as for the spec) unless ``path`` is a file this process can open: a missing file
    or a directory is not data that failed its checks."""
    if path.is_dir():
        problem = "is a directory"
    else:
        try:
            path.open("rb").close()
            return
        except FileNotFoundError:
            problem = "no such file"
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror or exc})"
    err.print(
        f"[red]✗[/red] {escape(str(path))}: {problem} (pass the path of a CSV or Parquet file)",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(code=2)


def _unwritable(err: Console, target: Path | None, why: str) -> NoReturn:
    err.print(f"[red]✗[/red] {escape(str(target))}: cannot write the profile ({why})", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _print(report: ValidationReport, drift: DriftReport | None, profile_out: Path | None) -> None:
    from shared.validation import locate

    out = Console()
    mark = "[green]✓ passed[/green]" if report.ok else "[red]✗ failed[/red]"
    out.print(
        f"{mark} {report.source}: {report.format}, {report.rows:,} rows, {report.bytes_read:,} bytes, "
        f"{report.seconds:.2f} s — {len(report.errors)} error(s), {len(report.warnings)} warning(s)",
        highlight=False,
    )
    if report.findings:
        table = Table(show_lines=False)
        # Examples are placed by CSV line (the header is line 1), or by 0-based row where there are no lines.
        for heading in ("", "check", "column", "count", "what (where)"):
            table.add_column(heading, overflow="fold")
        for f in report.findings:
            colour = "red" if f.severity == "error" else "yellow"
            where = locate(f.examples, values=True)
            table.add_row(
                f"[{colour}]{f.severity}[/{colour}]",
                f.check,
                f.column or "",
                f"{f.count:,}",
                f"{f.message}" + (f" ({where})" if where else ""),
            )
        out.print(table)
        for check, columns, remediation in _fixes(report.findings):
            out.print(
                f"fix {check}{' ' if columns else ''}{', '.join(columns)}: {remediation}",
                highlight=False,
                soft_wrap=True,
            )
    for note in report.notes:
        out.print(f"note: {note}", highlight=False)
    if drift is not None:
        verdict = "[red]dataset drifted[/red]" if drift.drifted else "[green]no dataset drift[/green]"
        out.print(
            f"{verdict}: {len(drift.drifted_columns)} of {len(drift.columns)} feature column(s) drifted "
            f"({drift.drifted_share:.0%}, threshold {drift.thresholds['drifted_share']:.0%})",
            highlight=False,
        )
        table = Table()
        for heading in ("column", "kind", "PSI", "Wasserstein/std", "JS", "KS p", "drifted"):
            table.add_column(heading)
        for c in drift.columns:
            table.add_row(
                c.column,
                c.kind,
                _fmt(c.psi),
                _fmt(c.wasserstein),
                _fmt(c.jensen_shannon),
                _fmt(c.ks_pvalue),
                "[red]yes[/red]" if c.drifted else "no",
            )
        out.print(table)
    if profile_out is not None:
        out.print(f"profile written to {profile_out}", highlight=False)


def _fixes(findings: list[Finding]) -> list[tuple[str, list[str], str]]:
    """One fix line per check and remediation, naming every column it applies to, in report order."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for f in findings:
        columns = grouped.setdefault((f.check, f.remediation), [])
        if f.column and f.column not in columns:
            columns.append(f.column)
    return [(check, columns, remediation) for (check, remediation), columns in grouped.items()]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"
