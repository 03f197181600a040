"""The HTTP API. Every route needs a function key except /api/health.

Errors are ``application/problem+json`` naming the field that was wrong; bad input is a 4xx,
never a 500. Reads come from the registry (the record of runs); actions go to the model's
coordinator orchestration or to a run's orchestration as events.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

import shared
from functions import clients
from functions.coordination import coordinator_view, job_states, send_work
from functions.http import answers_503_when_unavailable, json_response, problem
from functions.stranded import stranded as stranded_because
from shared.blobpaths import BlobNameError
from shared.events import (
    MAX_BODY_BYTES,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    EventError,
    KnownModels,
    bounded_text,
    parse_http,
)
from shared.logs import correlated
from shared.policy import rollback_refusal
from shared.publish import run_completed_event
from shared.registry import (
    ACTIVE_RUN_STATUSES,
    Lineage,
    Registry,
    RegistryError,
    Run,
    is_whole_number,
    pending_run,
    run_id_for,
)
from shared.runtime import Runtime, get_runtime
from shared.workflow import TriggerInfo, evaluation_job_base, job_base_of_candidate

bp = df.Blueprint()
logger = logging.getLogger("perennial.api")


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness and the version, for anyone: what the instance runs (settings, models, endpoints) is `/api/status`,
    behind the function key, since an endpoint's name is its public scoring host name."""
    return json_response({"status": "ok", "version": shared.__version__})


@bp.route(route="status", methods=["GET"])
def status(req: func.HttpRequest) -> func.HttpResponse:
    """What this instance runs: version, platform adapter, settings (nothing secret) and the model specs it loaded."""
    runtime = get_runtime()
    return json_response(
        {
            "status": "ok",
            "version": shared.__version__,
            "platform": runtime.settings.platform,
            "settings": runtime.settings.describe(),
            "models": {
                name: {
                    "task": spec.task,
                    "endpoint": spec.endpoint_name,
                    "primary_metric": spec.promotion.primary_metric,
                }
                for name, spec in sorted(runtime.specs.items())
            },
        }
    )


# --------------------------------------------------------------------------- helpers


def _unknown_model(runtime: Runtime, model: str) -> func.HttpResponse | None:
    if model in runtime.specs:
        return None
    known = ", ".join(sorted(runtime.specs)) or "none"
    return problem(404, "Unknown model", f"no model spec named {model!r}; known models: {known}", field="model")


def _json_body(req: func.HttpRequest) -> tuple[dict[str, Any] | None, func.HttpResponse | None]:
    raw = req.get_body()
    if len(raw) > MAX_BODY_BYTES:
        detail = f"the body is {len(raw):,} bytes; a request is at most {MAX_BODY_BYTES:,}"
        return None, problem(413, "Body too large", detail, field="body")
    if not raw.strip():
        return {}, None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON or bad UTF-8; RecursionError: nested too deep
        why = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return None, problem(400, "Malformed JSON", f"the body is not valid JSON: {why}", field="body")
    if not isinstance(body, dict):
        return None, problem(400, "Malformed request", "the body must be a JSON object", field="body")
    return body, None


def _model_of_run(runtime: Runtime, run_id: str) -> str | None:
    """Run ids are ``<model>-<hash>``; the longest matching spec name wins (names may contain '-')."""
    matches = [name for name in runtime.specs if run_id.startswith(f"{name}-")]
    return max(matches, key=len) if matches else None


def _find_run(runtime: Runtime, run_id: str) -> tuple[Run | None, func.HttpResponse | None]:
    model = _model_of_run(runtime, run_id)
    if model is None:
        return None, problem(404, "Unknown run", f"{run_id!r} is not a run id of a known model", field="id")
    try:
        run = clients.registry().get_run(model, run_id)
    except RegistryError as exc:
        return None, problem(400, "Malformed run id", str(exc), field="id")
    if run is None:
        detail = f"no run {run_id!r}; list runs with `perennial runs {model}` (GET /api/models/{model}/runs)"
        return None, problem(404, "Unknown run", detail, field="id")
    return run, None


def _run_summary(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "model": run.model,
        "status": run.status,
        "stage": run.stage,
        "trigger": {"kind": run.trigger_kind, "reason": run.trigger_reason, "event_id": run.trigger_event_id},
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "decision": run.decision,
        "reasons": run.decision_reasons,
        "registered_version": run.registered_version,
        "ships_version": _version_shipped(run),
        "error": run.error,
    }


def _version_shipped(run: Run) -> str | None:
    """The version the run registered, or the one a rollout or rollback ships (known from its request, before
    the run ends)."""
    answer = run.details.get("answer")
    asked = answer if isinstance(answer, dict) else {}
    if run.registered_version:
        return run.registered_version
    wanted = asked.get("to_version") if run.trigger_kind == "rollback" else asked.get("version")
    return str(wanted) if wanted is not None and run.trigger_kind in ("rollback", "rollout") else None


def _run_in_progress(registry: Registry, model: str, ours: str) -> func.HttpResponse | None:
    """409 naming the run when one is in progress (one run at a time per model); ``ours``, the run this request
    would start, does not count (a retry that raced the first attempt gets that run from ``_queue_run``)."""
    active = registry.active_runs(model, excluding=ours)
    if not active:
        return None
    run = active[0]
    # A rollback under way cannot be aborted (see abort); one still queued can.
    abortable = not (run.trigger_kind == "rollback" and run.status == "running")
    if not abortable:
        what_to_do = f"wait for it to end (GET /api/runs/{run.run_id})"
    else:
        what_to_do = (
            f"wait for it, or abort it with POST /api/runs/{run.run_id}/abort "
            "(a rollout in progress rolls back to the champion)"
        )
    return problem(
        409,
        "A run is in progress",
        f"run {run.run_id} is {run.stage}; {what_to_do}",
        run_id=run.run_id,
        trigger=run.trigger_kind,
        abortable=abortable,
    )


def _fingerprint(route: str, body: dict[str, Any]) -> str:
    """What a request asked for, so an ``Idempotency-Key`` re-used for a different request can be told apart."""
    return hashlib.sha256(json.dumps({"route": route, "body": body}, sort_keys=True).encode()).hexdigest()


def _status_url(req: func.HttpRequest, run_id: str) -> str:
    return f"{req.url.split('/api/')[0]}/api/runs/{run_id}"


async def _earlier_answer(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, registry: Registry, run_id: str, fingerprint: str
) -> func.HttpResponse | None:
    """A retried request (the same ``Idempotency-Key``) gets the run it started — not a second run, and not a
    409 naming its own run; the key sent again with a different request is refused (422). A run still pending
    has its work sent again: the first attempt may have been answered 503 before the coordinator had it."""
    model = _model_of_run(get_runtime(), run_id)
    run = registry.get_run(model, run_id) if model else None
    if run is None:
        return None
    answer = _answer_from(req, run, fingerprint, replayed=True)
    if answer.status_code == 202 and run.status == "pending" and isinstance(work := run.details.get("work"), dict):
        await send_work(client, run.model, work)  # the coordinator takes a run id once
    return answer


def _answer_from(req: func.HttpRequest, run: Run, fingerprint: str, replayed: bool) -> func.HttpResponse:
    """The answer for the request that started ``run`` — 202 while it is active, 200 once it has ended, and a 422
    when this request is not that one (its key re-used for another body). A run merged into another points there."""
    if run.details.get("request_fingerprint", fingerprint) != fingerprint:
        return problem(
            422,
            "Idempotency-Key re-used",
            f"this Idempotency-Key started run {run.run_id} with a different request; send a new key for a new "
            "request, or the same request to follow that run",
            field="Idempotency-Key",
            run_id=run.run_id,
        )
    merged_into = run.details.get("merged_into") if run.status == "merged" else None
    status_url = _status_url(req, str(merged_into or run.run_id))  # where the work is followed
    body = {
        "run_id": run.run_id,
        "model": run.model,
        **run.details.get("answer", {}),  # what the first answer said besides (a rollback's versions, …)
        "status": run.status,
        "reason": run.trigger_reason,
        "status_url": status_url,
        **({"merged_into": merged_into} if merged_into else {}),
    }
    status = 202 if run.status in ACTIVE_RUN_STATUSES else 200
    headers = {"Location": status_url, **({"Idempotent-Replayed": "true"} if replayed else {})}
    return json_response(body, status, headers=headers)


async def _queue_run(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    registry: Registry,
    work_kind: str,
    run: Run,
    trigger: TriggerInfo,
    extra: dict[str, Any],
    fingerprint: str,
) -> func.HttpResponse:
    """Record the run as pending at once (so a second request is refused with 409 even before the
    coordinator picks it up), with its work item (the coordinator takes it from there if the event is
    lost) and what the request asked for (``_earlier_answer``), hand it to the model's coordinator, answer
    202 with where to follow it."""
    work = {"kind": work_kind, "run_id": run.run_id, "trigger": trigger.dump()}
    details = {**run.details, "work": work, "request_fingerprint": fingerprint, "answer": extra}
    stored = registry.create_run(replace(run, details=details))  # the earlier one when a retry raced this one
    if stored.details.get("request_fingerprint", fingerprint) != fingerprint:
        return _answer_from(req, stored, fingerprint, replayed=True)  # the key, raced by another request: 422
    # Sent again for a raced retry (the stored run's own work item): the coordinator takes a run id once.
    await send_work(client, run.model, stored.details.get("work", work))
    status_url = _status_url(req, run.run_id)
    body = {
        "run_id": run.run_id,
        "model": run.model,
        **extra,
        "reason": stored.trigger_reason,
        "status_url": status_url,
    }
    return json_response(body, 202, headers={"Location": status_url})


def _request_key(req: func.HttpRequest) -> str:
    """What makes a request one run: its ``Idempotency-Key`` (a retried request is the same run), else a
    fresh id, so asking again after a finished attempt starts a new one. Bounded by the caller."""
    return req.headers.get("Idempotency-Key") or str(uuid.uuid4())


_JSON_TYPE_NAMES = {str: "string", bool: "boolean (true or false)"}
#: Free-text fields; the other string fields are names or ids (MAX_NAME_CHARS).
_TEXT_FIELDS = frozenset({"reason", "comment"})


def _checked_fields(
    req: func.HttpRequest, body: dict[str, Any], fields: dict[str, type]
) -> tuple[dict[str, Any], func.HttpResponse | None]:
    """The body's fields without nulls (a null is a field left out), or a 400 naming the first field that is
    unknown, of the wrong JSON type, too long or not Unicode; the ``Idempotency-Key`` header is checked too."""
    try:
        bounded_text(req.headers.get("Idempotency-Key"), "Idempotency-Key", MAX_NAME_CHARS)
    except EventError as exc:
        return {}, problem(400, "Bad Idempotency-Key", str(exc), field=exc.field)
    present = {name: value for name, value in body.items() if value is not None}
    for name, value in present.items():
        if name not in fields:
            return {}, problem(400, "Unknown field", f"{name!r} is not a field here ({', '.join(fields)})", field=name)
        if not isinstance(value, fields[name]):
            return {}, problem(400, "Wrong type", f"{name} must be a {_JSON_TYPE_NAMES[fields[name]]}", field=name)
        if isinstance(value, str):
            try:
                bounded_text(value, name, MAX_TEXT_CHARS if name in _TEXT_FIELDS else MAX_NAME_CHARS)
            except EventError as exc:
                return {}, problem(400, "Bad text", str(exc), field=name)  # too long, or not Unicode
    return present, None


# --------------------------------------------------------------------------- models


@bp.route(route="models", methods=["GET"])
@bp.durable_client_input(client_name="client")
@answers_503_when_unavailable
async def list_models(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Every model spec with its champion, latest run, the landed blobs its coordinator is collecting for the next
    run and when that run starts (``waiting``, or null), why its coordinator could not claim its work while it
    pauses (``claim_failed``, or null), how many of its events wait to be sent (the event topic
    could not take them; the housekeeping timer sends them) and how many the topic refused for good."""
    names = sorted(get_runtime().specs)
    # The coordinators' states side by side, each bounded (coordinator_view), while the records are read off the
    # worker's event loop: storage clients block.
    views, models = await asyncio.gather(
        asyncio.gather(*(coordinator_view(client, name) for name in names)), asyncio.to_thread(_model_records, names)
    )
    return json_response(
        {
            "models": [
                {**model, "waiting": waiting, "claim_failed": claim_failed}
                for model, (waiting, claim_failed) in zip(models, views, strict=True)
            ]
        }
    )


def _model_records(names: list[str]) -> list[dict[str, Any]]:
    runtime, registry, publisher = get_runtime(), clients.registry(), clients.publisher()
    models = []
    for name in names:
        spec = runtime.spec(name)
        champion = registry.champion(name)
        latest = registry.runs(name, limit=1)
        models.append(
            {
                "model": name,
                "description": spec.description,
                "endpoint": spec.endpoint_name,
                "champion": asdict(champion) if champion else None,
                "latest_run": _run_summary(latest[0]) if latest else None,
                "unsent_events": publisher.unsent_count(name),
                "refused_events": publisher.refused_count(name),
            }
        )
    return models


@bp.route(route="models/{model}/runs", methods=["GET"])
@answers_503_when_unavailable
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    """The model's runs, newest first (``?limit=N``, default 20; ``?after=<run id>`` for the next page, whose
    run id the answer gives as ``next`` while there are more)."""
    runtime = get_runtime()
    model = req.route_params.get("model", "")
    if (error := _unknown_model(runtime, model)) is not None:
        return error
    limit_text = req.params.get("limit", "20")
    if not is_whole_number(limit_text, 10) or not 1 <= int(limit_text) <= 1000:
        return problem(
            400, "Bad limit", f"limit={limit_text!r} must be a whole number 1-1000 (leave it out for 20)", field="limit"
        )
    limit, after = int(limit_text), req.params.get("after") or None
    try:
        runs = clients.registry().runs(model, limit=limit + 1, after=after)  # one more: is there a next page?
    except RegistryError as exc:
        return problem(400, "Cannot list after this run", str(exc), field="after")
    page = runs[:limit]
    more = len(runs) > limit
    return json_response(
        {"model": model, "runs": [_run_summary(r) for r in page], "next": page[-1].run_id if more else None}
    )


@bp.route(route="models/{model}/retrain", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_unavailable
async def retrain(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Start a retrain: ``{"reason": "...", "requested_by": "...", "blobs": ["landing/<model>/…", …]}``.

    202 with the run id and where to follow it; 409 naming the run when one is already running.
    """
    runtime = get_runtime()
    model = req.route_params.get("model", "")
    if (error := _unknown_model(runtime, model)) is not None:
        return error
    body, error = _json_body(req)
    if error is not None or body is None:
        return error or problem(400, "Malformed request", "send a JSON object")
    # A null is a field left out (docs/api.md), here as on the other routes: for the unknown-field check and for the
    # Idempotency-Key's fingerprint, so {"reason": null} replays the request sent without it.
    body = {name: value for name, value in body.items() if value is not None}
    selection = body.get("blobs")
    if selection is not None and not isinstance(selection, list):
        return problem(400, "Bad data selection", "blobs must be a list of blob names", field="blobs")
    if selection == []:
        detail = f"blobs is empty: leave it out to train on all of landing/{model}/, or name the blobs to train on"
        return problem(400, "Bad data selection", detail, field="blobs")
    for index, name in enumerate(selection or []):
        if not isinstance(name, str) or not name:
            detail = (
                f"blobs[{index}] is {json.dumps(name)}: each entry must be a blob name such as landing/{model}/b1.csv"
            )
            return problem(400, "Bad data selection", detail, field=f"blobs[{index}]")
    if "schemaId" in body:
        # An alert posted here would start a run without the alert's own rules (a Resolved alert, one within the
        # cool-down) and under the URL's model, not the alert's.
        return problem(
            400,
            "An alert is not a retrain request",
            "point the Azure Monitor action group's webhook at /api/alerts/azure-monitor; a retrain request is "
            '{"reason": "...", "requested_by": "..."}',
            field="schemaId",
        )
    if body.get("model") is not None and body["model"] != model:
        return problem(
            400,
            "Model mismatch",
            f"body names {body['model']!r} but the URL names {model!r} (leave model out of the body: the URL says it)",
            field="model",
        )
    body["model"] = model
    with correlated():
        try:
            known = KnownModels.from_specs(runtime.specs)
            trigger = parse_http(body, known, req.headers.get("Idempotency-Key"), extra_fields=("blobs",))
        except EventError as exc:
            return problem(400, "Malformed retrain request", str(exc), field=exc.field)
        registry = clients.registry()
        run_id = run_id_for(model, trigger.dedupe_key)
        fingerprint = _fingerprint("retrain", body)
        # Before the selection is checked: a retry after its run quarantined the chosen blobs still gets the run.
        if (earlier := await _earlier_answer(req, client, registry, run_id, fingerprint)) is not None:
            return earlier
        if selection:
            try:
                clients.store().landing_selection(model, selection)
            except BlobNameError as exc:
                return problem(400, "Bad data selection", str(exc), field=exc.field)
        if (busy := _run_in_progress(registry, model, run_id)) is not None:
            return busy
        info = TriggerInfo(
            kind=trigger.kind,
            reason=trigger.reason,
            source_event_id=trigger.event_id,
            details={**trigger.details, "blobs": selection} if selection else trigger.details,
        )
        run = pending_run(model, run_id, trigger.kind, trigger.reason, trigger.event_id)
        return await _queue_run(req, client, registry, "retrain", run, info, {}, fingerprint)


@bp.route(route="models/{model}/rollback", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_unavailable
async def rollback(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Restore the previous champion: ``{"reason": "...", "requested_by": "...", "immediate": false}``.

    202 with the rollback's run id; 409 when there is no previous version, or while a run is in progress
    (abort that run instead: a rollout in progress rolls back to the champion).
    """
    runtime = get_runtime()
    model = req.route_params.get("model", "")
    if (error := _unknown_model(runtime, model)) is not None:
        return error
    body, error = _json_body(req)
    if error is not None or body is None:
        return error or problem(400, "Malformed request", "send a JSON object")
    body, error = _checked_fields(req, body, {"reason": str, "requested_by": str, "immediate": bool})
    if error is not None:
        return error
    registry = clients.registry()
    # Not keyed by the champion's version: a retry after the rollback ended (the champion changed) is the same run.
    run_id = run_id_for(model, f"rollback:{_request_key(req)}")
    fingerprint = _fingerprint("rollback", {"model": model, **body})
    if (earlier := await _earlier_answer(req, client, registry, run_id, fingerprint)) is not None:
        return earlier
    champion = registry.champion(model)
    restored_by = registry.get_run(model, champion.run_id) if champion is not None and champion.run_id else None
    why_not = rollback_refusal(
        model,
        champion.version if champion else None,
        champion.previous_version if champion else None,
        restored_by.run_id if restored_by is not None and restored_by.trigger_kind == "rollback" else None,
    )
    if why_not is not None or champion is None or champion.previous_version is None:
        return problem(409, "Nothing to roll back to", why_not or f"{model} has no previous version", field="model")
    if (busy := _run_in_progress(registry, model, run_id)) is not None:
        return busy
    requested_by = str(body.get("requested_by", "api"))
    reason = str(body.get("reason") or f"rollback requested by {requested_by}")
    info = TriggerInfo(
        kind="rollback",
        reason=reason,
        source_event_id=run_id,
        details={"requested_by": requested_by, "immediate": bool(body.get("immediate", False))},
    )
    logger.info("rollback of %s from %s to %s requested", model, champion.version, champion.previous_version)
    run = pending_run(model, run_id, "rollback", reason, run_id)
    versions = {"from_version": champion.version, "to_version": champion.previous_version}
    with correlated():
        return await _queue_run(req, client, registry, "rollback", run, info, versions, fingerprint)


@bp.route(route="models/{model}/versions/{version}/rollout", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_unavailable
async def rollout(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Ship a registered version through the staged rollout: ``{"reason": "...", "requested_by": "..."}``.

    202 with the run id; 404 for a version that is not registered; 409 when it is the champion already
    or while a run is in progress.
    """
    runtime = get_runtime()
    model, version = req.route_params.get("model", ""), req.route_params.get("version", "")
    if (error := _unknown_model(runtime, model)) is not None:
        return error
    body, error = _json_body(req)
    if error is not None or body is None:
        return error or problem(400, "Malformed request", "send a JSON object")
    body, error = _checked_fields(req, body, {"reason": str, "requested_by": str})
    if error is not None:
        return error
    if not is_whole_number(version, 10):
        return problem(
            400,
            "Bad version",
            f"version {version!r} must be a version number such as 3 (ASCII digits, at most 10)",
            field="version",
        )
    version = str(int(version))  # '02' is version 2: one spelling for the registry, the champion check and the run
    registry = clients.registry()
    run_id = run_id_for(model, f"rollout:{version}:{_request_key(req)}")
    fingerprint = _fingerprint("rollout", {"model": model, "version": version, **body})
    if (earlier := await _earlier_answer(req, client, registry, run_id, fingerprint)) is not None:
        return earlier
    if registry.version(model, version) is None:
        return problem(404, "Unknown version", f"{model} has no registered version {version}", field="version")
    champion = registry.champion(model)
    if champion is not None and champion.version == version:
        return problem(409, "Already the champion", f"version {version} of {model} is the champion", field="version")
    if (busy := _run_in_progress(registry, model, run_id)) is not None:
        return busy
    requested_by = str(body.get("requested_by", "api"))
    reason = str(body.get("reason") or f"rollout of version {version} requested by {requested_by}")
    info = TriggerInfo(
        kind="rollout",
        reason=reason,
        source_event_id=run_id,
        details={"version": version, "requested_by": requested_by},
    )
    run = pending_run(model, run_id, "rollout", reason, run_id)
    with correlated():
        return await _queue_run(req, client, registry, "rollout", run, info, {"version": version}, fingerprint)


# --------------------------------------------------------------------------- runs


@bp.route(route="runs/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
@answers_503_when_unavailable
async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """A run: stage, drift against the champion's training data, candidates and their metrics, the decision and
    its reasons, lineage and rollout steps; while it trains or evaluates, its jobs as they stand (``jobs``: waiting
    for compute or running, since when, and when they are cancelled unless they end first)."""
    found = await asyncio.to_thread(_run_and_lineage, req.route_params.get("id", ""))
    if isinstance(found, func.HttpResponse):
        return found
    run, lineage = found
    jobs: list[dict[str, Any]] = []
    if run.status == "running" and run.stage in ("training", "evaluating"):
        if run.stage == "training":
            bases = [job_base_of_candidate(run.run_id, c.candidate_id) for c in lineage.candidates]
        else:
            bases = [evaluation_job_base(run.run_id)]
        jobs = await job_states(client, bases)
    return json_response(
        {
            **_run_summary(run),
            "manifest_url": run.manifest_url,
            "drift": run.details.get("drift") or None,
            "evaluation": _evaluation(run),
            "abort": run.details.get("abort"),  # who asked the run to stop, why and when; null when nobody did
            "approval": _approval_wait(run),
            "candidates": [asdict(c) for c in lineage.candidates],
            "jobs": jobs,
            "blobs": [asdict(b) for b in lineage.blobs],
            "version": asdict(lineage.version) if lineage.version else None,
            "rollout": [asdict(s) for s in lineage.rollout],
        }
    )


def _approval_wait(run: Run) -> dict[str, Any] | None:
    """What a run waiting for approval waits with: the version it would ship and when the wait ends (``until``,
    recorded since 2026-12-01); None for a run that is not waiting."""
    wait = run.details.get("awaiting_approval")
    if run.stage != "awaiting_approval" or run.status not in ACTIVE_RUN_STATUSES or not isinstance(wait, dict):
        return None
    return {"version": wait.get("version"), "until": wait.get("until")}


def _run_and_lineage(run_id: str) -> tuple[Run, Lineage] | func.HttpResponse:
    run, error = _find_run(get_runtime(), run_id)
    if error is not None or run is None:
        return error or problem(404, "Unknown run", "no such run")
    return run, clients.registry().lineage(run.model, run.run_id)


def _evaluation(run: Run) -> dict[str, Any] | None:
    """The holdout comparison behind the run's decision (comparison.json: challenger and champion metrics, the
    primary metric's difference with its interval and p-value) and the candidate it scored; None before one."""
    comparison = run.details.get("evaluation")
    if not isinstance(comparison, dict):
        return None
    return {"candidate": run.details.get("evaluated_candidate"), **comparison}


async def _answer_approval(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, approved: bool
) -> func.HttpResponse:
    runtime = get_runtime()
    run, error = _find_run(runtime, req.route_params.get("id", ""))
    if error is not None or run is None:
        return error or problem(404, "Unknown run", "no such run")
    body, error = _json_body(req)
    if error is not None or body is None:
        return error or problem(400, "Malformed request", "send a JSON object")
    body, error = _checked_fields(req, body, {"by": str, "comment": str})
    if error is not None:
        return error
    if run.stage != "awaiting_approval" or run.status not in ACTIVE_RUN_STATUSES:
        return problem(
            409,
            "Run is not awaiting approval",
            f"run {run.run_id} is {run.status} at stage {run.stage}; only a run at stage awaiting_approval can be "
            "approved or rejected",
        )
        # (approval is only asked for when the spec sets rollout.approval.required)
    answer = {"approved": approved, "by": body.get("by", "api"), "comment": body.get("comment", "")}
    try:
        await client.raise_event(run.run_id, "approval", answer)
    except Exception as exc:  # the SDK raises bare Exception for 404/410
        return problem(409, "Run is not waiting", f"run {run.run_id} cannot take an answer now: {exc}")
    return json_response({"run_id": run.run_id, **answer}, 202)


@bp.route(route="runs/{id}/approve", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_unavailable
async def approve(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Approve a run awaiting approval (body: ``{"by": "...", "comment": "..."}``)."""
    return await _answer_approval(req, client, approved=True)


@bp.route(route="runs/{id}/reject", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_unavailable
async def reject(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Reject a run awaiting approval; the champion stays."""
    return await _answer_approval(req, client, approved=False)


@bp.route(route="runs/{id}/abort", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_unavailable
async def abort(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Ask a running run to stop (body, optional: ``{"by": "...", "reason": "..."}``). Cancellation is
    cooperative: the run's jobs see the request at their next poll and are cancelled on the platform, the run
    stops at its next stage, and a rollout in progress rolls back to the champion — nothing is left half-done."""
    runtime = get_runtime()
    run, error = _find_run(runtime, req.route_params.get("id", ""))
    if error is not None or run is None:
        return error or problem(404, "Unknown run", "no such run")
    body, error = _json_body(req)
    if error is not None or body is None:
        return error or problem(400, "Malformed request", "send a JSON object")
    body, error = _checked_fields(req, body, {"by": str, "reason": str})
    if error is not None:
        return error
    by = body.get("by", "api")
    if run.status not in ACTIVE_RUN_STATUSES:
        return problem(409, "Run is not running", f"run {run.run_id} is already {run.status}")
    stranded = await stranded_because(client, run, datetime.now(UTC))
    if run.trigger_kind == "rollback" and run.status == "running" and stranded is None:
        # A rollback is the way back to safety; stopping it half-way would leave the split it is undoing.
        return problem(
            409,
            "A rollback cannot be aborted",
            f"run {run.run_id} is restoring the previous champion; wait for it to end (GET /api/runs/{run.run_id}), "
            f"then roll out the version you want with POST /api/models/{run.model}/versions/<version>/rollout "
            f"(from the CLI: perennial run {run.run_id}, then perennial rollout {run.model} VERSION)",
        )

    reason = body.get("reason")
    requested_at = datetime.now(UTC)

    def request(current: Run) -> Run:
        if current.status not in ACTIVE_RUN_STATUSES:
            return current  # it ended since it was read: nothing to abort (answered 409 below)
        current = current.request_abort(by, reason, requested_at)
        # Nothing runs a queued request yet, nor a run whose orchestration is gone: stopping it is closing it.
        # (update_run is conditional: if the coordinator starts the queued run meanwhile, this sees "running".)
        details = current.details
        if current.status == "pending":
            why, details = "before it started", {**details, "never_started": True}
        elif current.status == "running" and stranded is not None:
            why = stranded
        else:
            return current
        reasons = [f"{current.abort_reason()} ({why})"]
        return replace(current, status="aborted", stage="done", decision_reasons=reasons, details=details)

    updated = clients.registry().update_run(run.model, run.run_id, request)
    if not updated.abort_requested:
        return problem(409, "Run is not running", f"run {run.run_id} is already {updated.status}")
    if updated.status == "aborted":
        # Off the event loop, which every route shares: a slow topic (or devhost's own, served on this loop) must
        # not hold up this answer nor any other request.
        event = run_completed_event(updated.model, updated.run_id, updated.status, None, updated.decision_reasons)
        await asyncio.to_thread(clients.publisher().publish, [event])
        logger.info("closed %s on request by %s: %s", run.run_id, by, updated.decision_reasons[0])
        return json_response({"run_id": updated.run_id, "status": updated.status, "abort": "done"}, 200)
    # Wake a run that is waiting (for approval, or in a rollout's bake) so it acts now, not at the wait's end.
    for instance in (run.run_id, f"{run.run_id}-rollout"):
        try:
            await client.raise_event(instance, "abort", {"by": by})
        except Exception:  # the SDK raises bare Exception when the instance is not running: nothing waits there
            logger.debug("no waiting instance %s to wake for the abort", instance)
    logger.info("abort of %s requested by %s: %s", run.run_id, by, reason or "no reason given")
    return json_response({"run_id": updated.run_id, "status": updated.status, "abort": "requested"}, 202)
