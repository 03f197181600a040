"""The HTTP API. Every route needs a function key except /api/health.

Errors are ``application/problem+json`` naming the field that was wrong; bad input is a 4xx,
never a 500. Reads come from the registry (the record of runs); actions go to the model's
coordinator orchestration or to a run's orchestration as events.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, replace
from typing import Any

import azure.durable_functions as df
import azure.functions as func

import shared
from functions import clients
from functions.coordination import send_work
from functions.http import answers_503_when_storage_is_unreachable, json_response, problem
from shared.blobpaths import BlobNameError
from shared.events import EventError, KnownModels, parse_http
from shared.logs import correlated
from shared.registry import ACTIVE_RUN_STATUSES, Registry, RegistryError, Run, pending_run, run_id_for
from shared.runtime import Runtime, get_runtime
from shared.workflow import TriggerInfo

bp = df.Blueprint()
logger = logging.getLogger("perennial.api")


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness + what this instance runs: version, platform adapter and the model specs it loaded."""
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
    if not raw.strip():
        return {}, None
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, problem(400, "Malformed JSON", f"the body is not valid JSON: {exc}", field="body")
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
        return None, problem(404, "Unknown run", f"no run {run_id!r}; list runs with GET /api/models/{model}/runs")
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
        "error": run.error,
    }


def _run_in_progress(registry: Registry, model: str) -> func.HttpResponse | None:
    """409 naming the run when one is in progress (one run at a time per model)."""
    active = registry.active_runs(model)
    if not active:
        return None
    run = active[0]
    return problem(
        409,
        "A run is in progress",
        f"run {run.run_id} is {run.stage}; wait for it, or abort it with POST /api/runs/{run.run_id}/abort "
        "(a rollout in progress rolls back to the champion)",
        run_id=run.run_id,
    )


async def _queue_run(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    registry: Registry,
    work_kind: str,
    run: Run,
    trigger: TriggerInfo,
    extra: dict[str, Any],
) -> func.HttpResponse:
    """Record the run as pending at once (so a second request is refused with 409 even before the
    coordinator picks it up), with its work item (the coordinator takes it from there if the event is
    lost), hand it to the model's coordinator, answer 202 with where to follow it."""
    work = {"kind": work_kind, "run_id": run.run_id, "trigger": trigger.dump()}
    registry.create_run(replace(run, details={**run.details, "work": work}))
    await send_work(client, run.model, work)
    base = req.url.split("/api/")[0]
    status_url = f"{base}/api/runs/{run.run_id}"
    body = {"run_id": run.run_id, "model": run.model, **extra, "reason": run.trigger_reason, "status_url": status_url}
    return json_response(body, 202, headers={"Location": status_url})


def _request_key(req: func.HttpRequest) -> str:
    """What makes a request one run: its ``Idempotency-Key`` (a retried request is the same run), else a
    fresh id, so asking again after a finished attempt starts a new one."""
    return req.headers.get("Idempotency-Key") or str(uuid.uuid4())


def _check_fields(body: dict[str, Any], fields: dict[str, type]) -> func.HttpResponse | None:
    for name, value in body.items():
        if name not in fields:
            return problem(400, "Unknown field", f"{name!r} is not a field here ({', '.join(fields)})", field=name)
        if not isinstance(value, fields[name]):
            return problem(400, "Wrong type", f"{name} must be a {fields[name].__name__}", field=name)
    return None


# --------------------------------------------------------------------------- models


@bp.route(route="models", methods=["GET"])
@answers_503_when_storage_is_unreachable
def list_models(req: func.HttpRequest) -> func.HttpResponse:
    """Every model spec with its champion, latest run, how many of its events wait to be sent (the event topic
    could not take them; the housekeeping timer sends them) and how many the topic refused for good."""
    runtime = get_runtime()
    registry, publisher = clients.registry(), clients.publisher()
    models = []
    for name, spec in sorted(runtime.specs.items()):
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
    return json_response({"models": models})


@bp.route(route="models/{model}/runs", methods=["GET"])
@answers_503_when_storage_is_unreachable
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    """The model's runs, newest first (``?limit=N``, default 20)."""
    runtime = get_runtime()
    model = req.route_params.get("model", "")
    if (error := _unknown_model(runtime, model)) is not None:
        return error
    limit_text = req.params.get("limit", "20")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
        return problem(400, "Bad limit", f"limit={limit_text!r} must be a whole number 1-1000", field="limit")
    runs = clients.registry().runs(model, limit=int(limit_text))
    return json_response({"model": model, "runs": [_run_summary(r) for r in runs]})


@bp.route(route="models/{model}/retrain", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_storage_is_unreachable
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
    selection = body.get("blobs")
    if selection is not None and (
        not isinstance(selection, list) or not all(isinstance(b, str) and b for b in selection)
    ):
        return problem(400, "Bad data selection", "blobs must be a list of blob names", field="blobs")
    if "model" in body and body["model"] != model:
        return problem(
            400, "Model mismatch", f"body names {body['model']!r} but the URL names {model!r}", field="model"
        )
    body["model"] = model
    with correlated():
        try:
            known = KnownModels.from_specs(runtime.specs)
            trigger = parse_http(body, known, req.headers.get("Idempotency-Key"), extra_fields=("blobs",))
        except EventError as exc:
            return problem(400, "Malformed retrain request", str(exc), field=exc.field)
        if selection:
            try:
                clients.store().landing_selection(model, selection)
            except BlobNameError as exc:
                return problem(400, "Bad data selection", str(exc), field=exc.field)
        registry = clients.registry()
        if (busy := _run_in_progress(registry, model)) is not None:
            return busy
        run_id = run_id_for(model, trigger.dedupe_key)
        info = TriggerInfo(
            kind=trigger.kind,
            reason=trigger.reason,
            source_event_id=trigger.event_id,
            details={**trigger.details, "blobs": selection} if selection else trigger.details,
        )
        run = pending_run(model, run_id, trigger.kind, trigger.reason, trigger.event_id)
        return await _queue_run(req, client, registry, "retrain", run, info, {})


@bp.route(route="models/{model}/rollback", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_storage_is_unreachable
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
    if (error := _check_fields(body, {"reason": str, "requested_by": str, "immediate": bool})) is not None:
        return error
    registry = clients.registry()
    champion = registry.champion(model)
    if champion is None or champion.previous_version is None:
        current = f"version {champion.version} is its first champion" if champion else "it has no champion yet"
        return problem(409, "Nothing to roll back to", f"{model} has no previous version: {current}", field="model")
    if (busy := _run_in_progress(registry, model)) is not None:
        return busy
    requested_by = str(body.get("requested_by", "api"))
    reason = str(body.get("reason") or f"rollback requested by {requested_by}")
    run_id = run_id_for(model, f"rollback:{champion.version}:{_request_key(req)}")
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
        return await _queue_run(req, client, registry, "rollback", run, info, versions)


@bp.route(route="models/{model}/versions/{version}/rollout", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_storage_is_unreachable
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
    if (error := _check_fields(body, {"reason": str, "requested_by": str})) is not None:
        return error
    if not version.isdigit():
        return problem(400, "Bad version", f"version {version!r} must be a version number such as 3", field="version")
    registry = clients.registry()
    if registry.version(model, version) is None:
        return problem(404, "Unknown version", f"{model} has no registered version {version}", field="version")
    champion = registry.champion(model)
    if champion is not None and champion.version == version:
        return problem(409, "Already the champion", f"version {version} of {model} is the champion", field="version")
    if (busy := _run_in_progress(registry, model)) is not None:
        return busy
    requested_by = str(body.get("requested_by", "api"))
    reason = str(body.get("reason") or f"rollout of version {version} requested by {requested_by}")
    run_id = run_id_for(model, f"rollout:{version}:{_request_key(req)}")
    info = TriggerInfo(
        kind="rollout",
        reason=reason,
        source_event_id=run_id,
        details={"version": version, "requested_by": requested_by},
    )
    run = pending_run(model, run_id, "rollout", reason, run_id)
    with correlated():
        return await _queue_run(req, client, registry, "rollout", run, info, {"version": version})


# --------------------------------------------------------------------------- runs


@bp.route(route="runs/{id}", methods=["GET"])
@answers_503_when_storage_is_unreachable
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    """A run: stage, drift against the champion's training data, candidates and their metrics, the decision and
    its reasons, lineage and rollout steps."""
    runtime = get_runtime()
    run, error = _find_run(runtime, req.route_params.get("id", ""))
    if error is not None or run is None:
        return error or problem(404, "Unknown run", "no such run")
    lineage = clients.registry().lineage(run.model, run.run_id)
    return json_response(
        {
            **_run_summary(run),
            "manifest_url": run.manifest_url,
            "drift": run.details.get("drift") or None,
            "candidates": [asdict(c) for c in lineage.candidates],
            "blobs": [asdict(b) for b in lineage.blobs],
            "version": asdict(lineage.version) if lineage.version else None,
            "rollout": [asdict(s) for s in lineage.rollout],
        }
    )


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
    if run.stage != "awaiting_approval" or run.status not in ACTIVE_RUN_STATUSES:
        return problem(
            409,
            "Run is not awaiting approval",
            f"run {run.run_id} is {run.status} at stage {run.stage}; only a run at stage awaiting_approval can be "
            "approved or rejected",
        )
        # (approval is only asked for when the spec sets rollout.approval.required)
    answer = {"approved": approved, "by": str(body.get("by", "api")), "comment": str(body.get("comment", ""))}
    try:
        await client.raise_event(run.run_id, "approval", answer)
    except Exception as exc:  # the SDK raises bare Exception for 404/410
        return problem(409, "Run is not waiting", f"run {run.run_id} cannot take an answer now: {exc}")
    return json_response({"run_id": run.run_id, **answer}, 202)


@bp.route(route="runs/{id}/approve", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_storage_is_unreachable
async def approve(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Approve a run awaiting approval (body: ``{"by": "...", "comment": "..."}``)."""
    return await _answer_approval(req, client, approved=True)


@bp.route(route="runs/{id}/reject", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_storage_is_unreachable
async def reject(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Reject a run awaiting approval; the champion stays."""
    return await _answer_approval(req, client, approved=False)


@bp.route(route="runs/{id}/abort", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers_503_when_storage_is_unreachable
async def abort(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Ask a running run to stop. Cancellation is cooperative: the run's jobs see the request at their next
    poll and are cancelled on the platform, the run stops at its next stage, and a rollout in progress rolls
    back to the champion — nothing is left half-done."""
    runtime = get_runtime()
    run, error = _find_run(runtime, req.route_params.get("id", ""))
    if error is not None or run is None:
        return error or problem(404, "Unknown run", "no such run")
    if run.status not in ACTIVE_RUN_STATUSES:
        return problem(409, "Run is not running", f"run {run.run_id} is already {run.status}")
    if run.trigger_kind == "rollback":
        # A rollback is the way back to safety; stopping it half-way would leave the split it is undoing.
        return problem(
            409,
            "A rollback cannot be aborted",
            f"run {run.run_id} is restoring the previous champion; wait for it to end (GET /api/runs/{run.run_id}), "
            f"then roll out the version you want with POST /api/models/{run.model}/versions/<version>/rollout",
        )

    def request_abort(current: Run) -> Run:
        return replace(current, abort_requested=True)

    updated = clients.registry().update_run(run.model, run.run_id, request_abort)
    # Wake a run that is waiting (for approval, or in a rollout's bake) so it acts now, not at the wait's end.
    for instance in (run.run_id, f"{run.run_id}-rollout"):
        try:
            await client.raise_event(instance, "abort", {"by": "api"})
        except Exception:  # the SDK raises bare Exception when the instance is not running: nothing waits there
            logger.debug("no waiting instance %s to wake for the abort", instance)
    logger.info("abort requested for %s", run.run_id)
    return json_response({"run_id": updated.run_id, "status": updated.status, "abort": "requested"}, 202)
