"""The commands that talk to a running host: models, retrain, runs, run, approve, reject, abort, rollback.

Each one is a thin layer over :class:`perennial_cli.client.PerennialClient`: it makes one call and
prints the answer as a table. Every failure prints what went wrong and what to do, and exits 1; an argument
that cannot be sent (a key that is not printable ASCII, text that is not UTF-8) exits 2 before any request, as
typer itself does on a usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from perennial_cli.client import (
    DEFAULT_HOST_URL,
    HOST_ENV,
    KEY_ENV,
    LOCAL_KEY_FILE,
    Accepted,
    BadArgument,
    ClientError,
    Evaluation,
    JobState,
    ModelInfo,
    ModelVersion,
    PerennialClient,
    Problem,
    ProblemError,
    RunDetail,
    RunSummary,
    Waiting,
    local_key,
    requested_by_default,
)
from perennial_cli.status_style import STATUS_COLOURS, status_markup

PANEL = "Talk to a running host"
Row = TypeVar("Row")
#: Below this many terminal columns the list tables drop columns instead of cutting every cell to "tr…".
WIDE_TABLES = 110

HostOption = Annotated[
    str,
    typer.Option(
        "--host",
        envvar=HOST_ENV,
        metavar="URL",
        help="The Perennial host: `perennial up` locally, or https://<app>.azurewebsites.net.",
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar=KEY_ENV,
        metavar="KEY",
        show_default=False,
        help=f"Function key, sent as x-functions-key. For a host on this machine it defaults to {LOCAL_KEY_FILE}.",
    ),
]


def _named(param: typer.CallbackParam, value: str | None) -> str | None:
    """A MODEL or RUN_ID argument: a blank one would reach no route, and the host could only say "not found"."""
    if value is not None and not value.strip():
        wanted = "the model's name, e.g. fraud" if param.name == "model" else "a run id `perennial runs MODEL` lists"
        raise typer.BadParameter(f"is empty: give {wanted}")
    return value


def _out() -> Console:
    """Standard output; made per command so that it sizes itself to the terminal (or $COLUMNS) of this call."""
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


# --------------------------------------------------------------------------- plumbing


@contextmanager
def _client(host: str, key: str | None) -> Iterator[PerennialClient]:
    """A client for ``host``; any ClientError inside the block is printed with its fix and exits 1 (2 for a
    BadArgument: a usage error, found before any request)."""
    try:
        waiting = _err()
        with PerennialClient(
            host, key or local_key(host), on_wait=lambda note: waiting.print(f"… {escape(note)}", highlight=False)
        ) as client:
            yield client
    except ClientError as exc:
        _print_error(exc)
        raise typer.Exit(code=2 if isinstance(exc, BadArgument) else 1) from None


def _print_error(exc: ClientError) -> None:
    err = _err()
    if isinstance(exc, ProblemError):
        _print_problem(exc.problem, exc.status)
    else:
        err.print(f"[red]✗[/red] {escape(exc.message)}", soft_wrap=True)
    if exc.hint:
        err.print(f"  fix: {escape(exc.hint)}", soft_wrap=True)


def _print_problem(problem: Problem, status: int) -> None:
    err = _err()
    title = problem.title or "Error"
    err.print(f"[red]✗ {status} {escape(title)}[/red]", soft_wrap=True)
    if problem.detail:
        err.print(f"  {escape(problem.detail)}", soft_wrap=True)
    if problem.field:
        err.print(f"  field: [bold]{escape(problem.field)}[/bold]", soft_wrap=True)
    for name, value in sorted(problem.extras.items()):
        if name == "hint":
            continue  # printed once, as the fix line (ClientError.hint)
        err.print(f"  {escape(name)}: {escape(_text(value))}", soft_wrap=True)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value, default=str)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _print_jobs(out: Console, jobs: list[JobState]) -> None:
    """The run's jobs as they stand: waiting for compute (the queue limit) or running (the running limit)."""
    table = Table(title="Jobs now", title_justify="left")
    for heading in ("job", "status", "since (UTC)", "cancelled at (UTC) unless it ends"):
        table.add_column(heading, overflow="fold", no_wrap=heading == "job")
    for job in jobs:
        if job.running_since is not None:
            since = f"running since {_when(job.running_since)}"
            if job.ran_minutes_before:
                since += f" (+{job.ran_minutes_before:.0f} min in earlier attempts)"
        elif job.waiting_since is not None:
            since = f"waiting for compute since {_when(job.waiting_since)}"
        else:
            since = ""
        attempt = f" (attempt {job.attempt + 1})" if job.attempt else ""
        table.add_row(escape(job.job), escape(job.status) + attempt, since, _when(job.deadline))
    out.print(table)


def _print_evaluation(out: Console, evaluation: Evaluation) -> None:
    """The holdout numbers the decision rests on; the candidates table above shows validation-split metrics."""
    scored = f"candidate {escape(evaluation.candidate)}" if evaluation.candidate else "the best candidate"
    out.print(f"[bold]Holdout evaluation[/bold] of {scored} on {evaluation.n_holdout:,} rows (what the decision uses)")
    metric = evaluation.primary_metric
    line = f"  {escape(metric)}: challenger {_score(evaluation.challenger.get(metric))}"
    if evaluation.champion is not None:
        line += f", champion {_score(evaluation.champion.get(metric))}"
    difference = evaluation.difference
    if difference is not None:
        line += (
            f"; gain {difference.estimate:+.4f}, {difference.confidence:.0%} CI "
            f"[{difference.ci_low:+.4f}, {difference.ci_high:+.4f}], p={difference.p_value:.3g}"
        )
    out.print(line, soft_wrap=True)
    others = {k: v for k, v in evaluation.challenger.items() if k != metric}
    if others:
        out.print(f"  challenger: {escape(_pairs(others))}", soft_wrap=True)
    if evaluation.champion is not None:
        champion = {k: v for k, v in evaluation.champion.items() if k != metric}
        out.print(f"  champion:   {escape(_pairs(champion))}", soft_wrap=True)
    if evaluation.per_class and len(evaluation.per_class.get("challenger") or {}) > 2:
        _print_per_class(out, evaluation.per_class)


def _print_per_class(out: Console, per_class: Mapping[str, Mapping[str, Mapping[str, float | None]] | None]) -> None:
    """A multiclass model's one-vs-rest recall and precision per class, challenger against champion: what a
    per-class guardrail judges, and where a macro average hides a class that stopped being found."""
    ours, theirs = per_class.get("challenger") or {}, per_class.get("champion") or {}
    table = Table(title="Per class (holdout, one-vs-rest)", title_justify="left")
    for heading in ("class", "rows", "recall", "precision"):
        table.add_column(heading, justify="left" if heading == "class" else "right", overflow="fold")
    for name, values in sorted(ours.items()):
        old = theirs.get(name, {})

        def pair(
            metric: str, values: Mapping[str, float | None] = values, old: Mapping[str, float | None] = old
        ) -> str:
            shown = _score(values.get(metric))
            return f"{shown} (was {_score(old.get(metric))})" if theirs else shown

        table.add_row(escape(name), f"{int(values.get('support') or 0):,}", pair("recall"), pair("precision"))
    out.print(table)


def _score(value: float | None) -> str:
    return "?" if value is None else f"{value:.4f}"


def _data_line(version: ModelVersion | None, claimed: int) -> str:
    """What trained the version: counted from its manifest (versions before 2026-11-30 recorded each blob's hash)."""
    claims = f"{claimed} blob(s) claimed by this run"
    if version is None:
        return claims
    if version.manifest_sha256:
        return f"{version.data_files} blob(s), {version.data_bytes:,} bytes, each pinned by sha256 in the manifest; {claims}"
    return f"{len(version.data_hashes)} blob hash(es) recorded; {claims}"


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_text(v)}" for k, v in sorted(values.items()))


def _print_accepted(what: str, answer: Accepted, follow: bool = False) -> None:
    out = _out()
    out.print(f"[green]✓[/green] {escape(what)}", soft_wrap=True)
    for name, value in answer.model_dump(exclude_none=True).items():
        out.print(f"  {escape(name)}: {escape(_text(value))}", soft_wrap=True)
    if follow and answer.run_id:
        out.print(f"  follow it: perennial run {escape(answer.run_id)}")


# --------------------------------------------------------------------------- reads


def models(host: HostOption = DEFAULT_HOST_URL, key: KeyOption = None) -> None:
    """List the host's models: each one's champion version, latest run, and when its next run starts.

    Example: perennial models --host http://127.0.0.1:7071
    """
    out = _out()
    with _client(host, key) as client:
        found = client.models()
    if not found:
        out.print("the host serves no models (add a spec under models/ and restart it)")
        return
    out.print(_models_table(client.base_url, found, narrow=out.width < WIDE_TABLES))
    for model in found:
        if model.waiting is not None:
            out.print(_waiting_line(model.model, model.waiting), soft_wrap=True)
        if model.claim_failed is not None:
            out.print(
                f"[red]{escape(model.model)}: its coordinator could not start the next run ({escape(model.claim_failed)})"
                "[/red]; it looks in storage again every 5 minutes. If a request it cannot take stays pending, "
                "`perennial abort RUN_ID` it.",
                soft_wrap=True,
            )
        if model.unsent_events:
            out.print(
                f"[yellow]{escape(model.model)}: {model.unsent_events} event(s) the event topic could not take wait "
                f"in manifests/{escape(model.model)}/unsent/[/yellow]; the housekeeping timer sends them every 10 "
                "minutes. If they stay, check PERENNIAL_EVENTGRID_ENDPOINT and the app's 'EventGrid Data Sender' role."
            )
        if model.refused_events:
            out.print(
                f"[red]{escape(model.model)}: {model.refused_events} event(s) the event topic refused for good are in "
                f"deadletter/{escape(model.model)}/events/[/red], each with the topic's answer; no subscriber got "
                f"them. Fix what the answer names, then move an event back to manifests/{escape(model.model)}/unsent/ to "
                "send it again, or delete it."
            )


def _waiting_line(model: str, waiting: Waiting) -> str:
    """When the model's next run starts: the coordinator waits for landing to be quiet (triggers.debounce)."""
    when = f" at {waiting.starts_at:%H:%M:%S} UTC" if waiting.starts_at else " soon"  # an older host says no time
    latest = f" ({waiting.deadline:%H:%M:%S} UTC at the latest)" if waiting.deadline else ""
    return (
        f"{escape(model)}: {waiting.blobs} landed blob(s) wait for the next run, which starts{when} unless another "
        f"lands first{latest}"
    )


def runs(
    model: str = typer.Argument(
        ..., callback=_named, metavar="MODEL", help="The model's name (its spec file name, e.g. fraud)."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="How many runs to show, newest first."),
    after: str | None = typer.Option(
        None, "--after", callback=_named, metavar="RUN_ID", help="Show the runs listed after this one (the next page)."
    ),
    host: HostOption = DEFAULT_HOST_URL,
    key: KeyOption = None,
) -> None:
    """List a model's runs, newest first: trigger, status, stage, decision and the version it registered.

    Example: perennial runs fraud --limit 5   (then: perennial runs fraud --limit 5 --after <last run id>)
    """
    out = _out()
    with _client(host, key) as client:
        found, following = client.runs_page(model, limit, after)
    if not found:
        if after:
            out.print(f"no runs of {escape(model)} after {escape(after)}")
        else:
            out.print(f"model {escape(model)} has no runs yet (start one with: perennial retrain {escape(model)})")
        return
    out.print(_runs_table(model, found, narrow=out.width < WIDE_TABLES))
    if following:
        out.print(
            f"older runs: perennial runs {escape(model)} --limit {limit} --after {escape(following)}", soft_wrap=True
        )


def _runs_table(model: str, found: list[RunSummary], narrow: bool = False) -> Table:
    run_id: Cell[RunSummary] = ("run id", lambda r: escape(r.run_id))
    trigger: Cell[RunSummary] = ("trigger", lambda r: escape(r.trigger.kind))
    version: Cell[RunSummary] = ("version", lambda r: escape(r.ships_version or r.registered_version or ""))
    if narrow:  # run id, trigger, status (the stage while in flight), version, started: fits 80 columns
        status: Cell[RunSummary] = ("status", _status_or_stage)
        started: Cell[RunSummary] = ("started", lambda r: _when_short(r.created_at))
        return _table(
            f"Runs of {escape(model)} (newest first; UTC)", found, [run_id, trigger, status, version, started]
        )
    wide: list[Cell[RunSummary]] = [
        run_id,
        trigger,
        ("status", lambda r: status_markup(r.status)),
        ("stage", lambda r: escape(r.stage)),
        ("decision", lambda r: escape(r.decision or "")),
        version,
        ("started (UTC)", lambda r: _when(r.created_at)),
    ]
    return _table(f"Runs of {escape(model)} (newest first)", found, wide, no_wrap=("run id", "started (UTC)"))


def _models_table(base_url: str, found: list[ModelInfo], narrow: bool = False) -> Table:
    name: Cell[ModelInfo] = ("model", lambda m: escape(m.model))
    champion: Cell[ModelInfo] = (
        "champion",
        lambda m: escape(m.champion.version) if m.champion else "[dim]none yet[/dim]",
    )
    latest: Cell[ModelInfo] = (
        "latest run",
        lambda m: escape(m.latest_run.run_id) if m.latest_run else "[dim]no runs[/dim]",
    )
    if narrow:  # model, champion, latest run, status (the stage while in flight), started: fits 80 columns
        status: Cell[ModelInfo] = ("status", lambda m: _status_or_stage(m.latest_run) if m.latest_run else "")
        started: Cell[ModelInfo] = ("started", lambda m: _when_short(m.latest_run.created_at) if m.latest_run else "")
        return _table(f"Models at {escape(base_url)} (UTC)", found, [name, champion, latest, status, started])
    wide: list[Cell[ModelInfo]] = [
        name,
        champion,
        ("since (UTC)", lambda m: _when(m.champion.since) if m.champion else ""),
        latest,
        ("status", lambda m: status_markup(m.latest_run.status) if m.latest_run else ""),
        ("stage", lambda m: escape(m.latest_run.stage) if m.latest_run else ""),
        ("started (UTC)", lambda m: _when(m.latest_run.created_at) if m.latest_run else ""),
    ]
    return _table(f"Models at {escape(base_url)}", found, wide, no_wrap=("model", "latest run"))


#: A list table's column: its heading and how a row fills its cell (rich markup).
Cell = tuple[str, Callable[[Row], str]]


#: Columns of ids, shown whole whatever the terminal's width.
WHOLE_COLUMNS = frozenset({"run id", "latest run", "model"})


def _table(
    title: str, rows: Sequence[Row], columns: Sequence[Cell[Row]], no_wrap: Sequence[str] | None = None
) -> Table:
    """A list table; ``no_wrap`` None: the narrow layout (no vertical rules, no cell ever wraps). Ids (the columns
    in ``WHOLE_COLUMNS``) are never shortened: they are what a user copies into the next command, so in a narrow
    terminal (or a pipe, which rich reads as 80 columns) the other columns give way."""
    narrow = no_wrap is None
    table = _narrow_table(title) if narrow else Table(title=title, title_justify="left")
    cells = [[cell(row) for _, cell in columns] for row in rows]
    for index, (heading, _) in enumerate(columns):
        whole = max((Text.from_markup(line[index]).cell_len for line in cells), default=0)
        table.add_column(
            heading,
            no_wrap=narrow or heading in (no_wrap or ()),
            min_width=whole if heading in WHOLE_COLUMNS else None,
        )
    for line in cells:
        table.add_row(*line)
    return table


def _narrow_table(title: str) -> Table:
    """No vertical rules and no outer padding: five columns of a list fit an 80-column terminal."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def _status_or_stage(run: RunSummary) -> str:
    """A finished run's status; a run in flight shows where it is (training, rolling_out, …) in the running colour."""
    if run.status in ("pending", "running") and run.stage:
        return f"[{STATUS_COLOURS['running']}]{escape(run.stage)}[/{STATUS_COLOURS['running']}]"
    return status_markup(run.status)


def _when_short(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%m-%d %H:%M") if moment else ""


def show_run(
    run_id: str = typer.Argument(
        ...,
        callback=_named,
        metavar="RUN_ID",
        help="The run id, e.g. fraud-3f2a9c1e0b7d4a65 (see `perennial runs MODEL`).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the host's JSON as it is, for scripts."),
    host: HostOption = DEFAULT_HOST_URL,
    key: KeyOption = None,
) -> None:
    """Show one run: stage, trigger, candidates and their metrics, its jobs while they wait or run, the decision and why, lineage, rollout steps.

    Example: perennial run fraud-3f2a9c1e0b7d4a65
    """
    with _client(host, key) as client:
        if as_json:
            sys.stdout.write(json.dumps(client.run_document(run_id), indent=2, sort_keys=True) + "\n")
            return
        run = client.run(run_id)
    _print_run(run)


def _print_run(run: RunDetail) -> None:
    from shared.registry import ACTIVE_RUN_STATUSES  # the registry loads the storage SDKs: not for every command

    out = _out()
    ended = run.status not in ACTIVE_RUN_STATUSES
    ships_a_version = run.trigger.kind in ("rollback", "rollout")  # trains and decides nothing
    out.print(f"[bold]Run {escape(run.run_id)}[/bold] of model {escape(run.model)}", soft_wrap=True)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim", no_wrap=True)
    facts.add_column(overflow="fold")
    facts.add_row("status", f"{status_markup(run.status)} at stage {escape(run.stage)}")
    trigger = escape(run.trigger.kind or "unknown")
    if run.trigger.reason:
        trigger += f": {escape(run.trigger.reason)}"
    facts.add_row("trigger", trigger)
    facts.add_row("started", f"{_when(run.created_at)} UTC (updated {_when(run.updated_at)} UTC)")
    if run.approval is not None:
        what = f" of version {escape(run.approval.version)}" if run.approval.version else ""
        until = (
            f" until {_when(run.approval.until)} UTC (then it ends approval_timed_out)" if run.approval.until else ""
        )
        facts.add_row(
            "waiting",
            f"[yellow]for a person's approval[/yellow]{what}{until}: perennial approve {escape(run.run_id)}, or "
            f"perennial reject {escape(run.run_id)} --comment WHY",
        )
    if run.error:
        facts.add_row("error", f"[red]{escape(run.error)}[/red]")
    out.print(facts)

    out.print()
    if run.candidates:
        table = Table(title="Candidates", title_justify="left")
        for heading in ("candidate", "status", "params", "metrics", "job"):
            table.add_column(heading, overflow="fold", no_wrap=heading == "candidate")
        for candidate in run.candidates:
            table.add_row(
                escape(candidate.candidate_id),
                status_markup(candidate.status),
                escape(_pairs(candidate.params)),
                escape(_pairs(candidate.metrics)),
                escape(candidate.job_name or ""),
            )
        out.print(table)
        for candidate in run.candidates:
            if candidate.error:  # below the table: a log tail does not fit a cell
                out.print(
                    f"[red]{escape(candidate.candidate_id)} {escape(candidate.status)}:[/red] {escape(candidate.error)}"
                )
    elif ships_a_version:
        out.print(f"[dim]Candidates: none (a {escape(run.trigger.kind)} ships a registered version)[/dim]")
    elif ended:
        out.print("[dim]Candidates: none (the run ended before training)[/dim]")
    else:
        out.print("[dim]Candidates: none planned yet[/dim]")
    if run.jobs:
        out.print()
        _print_jobs(out, run.jobs)
    if run.evaluation is not None:
        out.print()
        _print_evaluation(out, run.evaluation)

    out.print()
    if run.decision:
        colour = "green" if run.decision == "promote" else "yellow"
        out.print(f"[bold]Decision:[/bold] [{colour}]{escape(run.decision)}[/{colour}]")
    elif not ships_a_version:
        out.print(f"[bold]Decision:[/bold] [dim]{'none (the run ended first)' if ended else 'none yet'}[/dim]")
    for reason in run.reasons:
        out.print(f"  • {escape(reason)}", soft_wrap=True)

    out.print()
    out.print("[bold]Lineage[/bold]")
    lineage = Table.grid(padding=(0, 2))
    lineage.add_column(style="dim", no_wrap=True)
    lineage.add_column(overflow="fold")
    version = run.version
    if version is not None:
        lineage.add_row("version", f"{escape(version.version)} (candidate {escape(version.candidate_id)})")
    else:
        lineage.add_row("version", "[dim]none registered[/dim]")
    manifest = (version.manifest_url if version else "") or run.manifest_url or ""
    lineage.add_row("manifest", escape(manifest) or "[dim]none yet[/dim]")
    if version is not None and version.manifest_sha256:
        lineage.add_row("manifest sha256", escape(version.manifest_sha256))
    lineage.add_row("data", _data_line(version, claimed=len(run.blobs)))
    if version is not None:
        lineage.add_row("params", escape(_pairs(version.params)) or "[dim]none[/dim]")
        if version.metrics:
            lineage.add_row("metrics", escape(_pairs(version.metrics)))
        if version.code_version or version.environment:
            lineage.add_row("code", escape(" ".join(x for x in (version.code_version, version.environment) if x)))
    out.print(lineage)

    out.print()
    if run.rollout:
        table = Table(title="Rollout", title_justify="left")
        for heading in ("#", "step", "traffic %", "mirror %", "verdict", "at (UTC)"):
            table.add_column(heading, overflow="fold", no_wrap=heading in ("#", "at (UTC)"))
        for step in sorted(run.rollout, key=lambda s: s.index):
            table.add_row(
                str(step.index),
                escape(step.step),
                escape(_pairs(step.traffic)),
                escape(_pairs(step.mirror_traffic)),
                status_markup(step.verdict),
                _when(step.at),
            )
        out.print(table)
    else:
        out.print("[dim]Rollout: not started[/dim]")


# --------------------------------------------------------------------------- actions

REQUESTED_BY: Any = typer.Option(
    None, "--requested-by", show_default=False, help="Who asks. Default: your OS user name."
)


def retrain(
    model: str = typer.Argument(
        ..., callback=_named, metavar="MODEL", help="The model to retrain (its spec file name, e.g. fraud)."
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why; recorded on the run and in its lineage."),
    blob: list[str] = typer.Option(
        [], "--blob", metavar="NAME", help="Train on this landing blob only, e.g. landing/fraud/b1.csv (repeatable)."
    ),
    requested_by: str | None = REQUESTED_BY,
    host: HostOption = DEFAULT_HOST_URL,
    key: KeyOption = None,
) -> None:
    """Start a retrain of MODEL now (on all its landing data, or on --blob ones). Exit 1 if one is running.

    Example: perennial retrain fraud --reason "chargebacks rose this week"
    """
    out = _out()
    err = _err()
    with _client(host, key) as client:
        try:
            accepted = client.retrain(model, reason, requested_by or requested_by_default(), list(blob) or None)
        except ProblemError as exc:
            running = exc.problem.extras.get("run_id")
            if exc.status != 409 or not isinstance(running, str):
                raise
            err.print(
                f"[red]✗[/red] a run of {escape(model)} is already in progress: run {escape(running)}", soft_wrap=True
            )
            err.print(f"  {escape(exc.problem.detail)}", soft_wrap=True)  # the host's advice for this kind of run
            stop = f"    stop it: perennial abort {escape(running)}" if exc.problem.extras.get("abortable") else ""
            err.print(f"  follow it: perennial run {escape(running)}{stop}", soft_wrap=True)
            raise typer.Exit(code=1) from None
    name = escape(accepted.model or model)
    out.print(f"[green]✓[/green] retrain of {name} accepted: run [bold]{escape(accepted.run_id)}[/bold]")
    out.print(f"  reason: {escape(accepted.reason)}", soft_wrap=True)
    urls = dict.fromkeys(u for u in (accepted.status_url, accepted.location) if u)
    for url in urls:
        out.print(f"  status: {escape(url)}", soft_wrap=True)
    out.print(f"  follow it: perennial run {escape(accepted.run_id)}")


def approve(
    run_id: str = typer.Argument(
        ..., callback=_named, metavar="RUN_ID", help="A run waiting at stage awaiting_approval."
    ),
    comment: str | None = typer.Option(None, "--comment", help="Recorded with the answer."),
    by: str | None = typer.Option(None, "--by", show_default=False, help="Who approves. Default: your OS user name."),
    host: HostOption = DEFAULT_HOST_URL,
    key: KeyOption = None,
) -> None:
    """Approve a run that waits for approval (rollout.approval.required); its rollout starts.

    Example: perennial approve fraud-3f2a9c1e0b7d4a65 --comment "metrics reviewed"
    """
    with _client(host, key) as client:
        answer = client.approve(run_id, by or requested_by_default(), comment)
    _print_accepted(f"approved run {run_id}", answer)


def reject(
    run_id: str = typer.Argument(
        ..., callback=_named, metavar="RUN_ID", help="A run waiting at stage awaiting_approval."
    ),
    comment: str | None = typer.Option(None, "--comment", help="Recorded with the answer: say why."),
    by: str | None = typer.Option(None, "--by", show_default=False, help="Who rejects. Default: your OS user name."),
    host: HostOption = DEFAULT_HOST_URL,
    key: KeyOption = None,
) -> None:
    """Reject a run that waits for approval; the champion stays.

    Example: perennial reject fraud-3f2a9c1e0b7d4a65 --comment "trained on the faulty export"
    """
    with _client(host, key) as client:
        answer = client.reject(run_id, by or requested_by_default(), comment)
    _print_accepted(f"rejected run {run_id}", answer)


def abort(
    run_id: str = typer.Argument(..., callback=_named, metavar="RUN_ID", help="A pending or running run."),
    reason: str | None = typer.Option(None, "--reason", help="Why; the run's reasons say it when it ends."),
    by: str | None = typer.Option(None, "--by", show_default=False, help="Who aborts. Default: your OS user name."),
    host: HostOption = DEFAULT_HOST_URL,
    key: KeyOption = None,
) -> None:
    """Ask a run to stop. Its jobs are cancelled at their next poll; a rollout in progress rolls back.

    A queued run, or one nothing runs any more (terminated or purged), is closed at once so the model can train.

    Example: perennial abort fraud-3f2a9c1e0b7d4a65 --reason "the batch was exported twice"
    """
    with _client(host, key) as client:
        answer = client.abort(run_id, by or requested_by_default(), reason)
    if answer.model_dump().get("status") == "aborted":  # queued, or nothing was running it: closed at once
        _print_accepted(f"run {run_id} aborted", answer)
    else:
        _print_accepted(f"abort of run {run_id} requested (it stops at its next poll or stage)", answer)


def rollback(
    model: str = typer.Argument(
        ..., callback=_named, metavar="MODEL", help="The model whose previous champion should serve again."
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why; recorded on the rollback."),
    immediate: bool = typer.Option(
        False,
        "--immediate",
        help="Move all traffic in one step instead of the paced steps (rollout.rollback_step_minutes apart).",
    ),
    requested_by: str | None = REQUESTED_BY,
    host: HostOption = DEFAULT_HOST_URL,
    key: KeyOption = None,
) -> None:
    """Put MODEL's previous champion back at 100 % of traffic. Exit 1 if there is none to go back to.

    Traffic moves in steps (50 → 90 → 100 %) minutes apart, so load shifts gradually; --immediate moves it at once.

    Example: perennial rollback fraud --reason "complaints about false declines" --immediate
    """
    with _client(host, key) as client:
        answer = client.rollback(model, reason, requested_by or requested_by_default(), immediate)
    _print_accepted(f"rollback of {model} accepted", answer, follow=True)


def rollout(
    model: str = typer.Argument(..., callback=_named, metavar="MODEL", help="The model the version belongs to."),
    version: str = typer.Argument(
        ..., metavar="VERSION", help="A registered version that is not the champion, e.g. 4."
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why; recorded on the run."),
    requested_by: str | None = REQUESTED_BY,
    host: HostOption = DEFAULT_HOST_URL,
    key: KeyOption = None,
) -> None:
    """Ship a registered VERSION of MODEL through the staged rollout. Exit 1 if it cannot start.

    Smoke test, shadow, then each traffic step analysed against the champion; a failed gate rolls it back.

    It cannot start when the version is unknown, already the champion, or a run is in progress.

    Example: perennial rollout fraud 4 --reason "retry after the endpoint quota was raised"
    """
    with _client(host, key) as client:
        answer = client.rollout(model, version, reason, requested_by or requested_by_default())
    _print_accepted(f"rollout of {model} version {version} accepted", answer, follow=True)
