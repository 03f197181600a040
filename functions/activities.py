"""Durable activities: each is idempotent and calls into shared/.

Activities run at least once (DESIGN rule 2). Each side effect has a deterministic key and
is checked before it is created: a run id from its trigger, a job name from run + candidate +
attempt, a manifest written once, a model version found by its run tag before registering.
Inputs and outputs are plain JSON (``shared.workflow`` messages).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import AzureError

from functions import clients
from shared import policy
from shared.blobpaths import BlobNameError, quoted_etag
from shared.canary import DeploymentSample, WindowP95, analyse_canary
from shared.events import MODEL_TAG, MONITOR_KINDS, queued_alert_blocked
from shared.housekeeping import retire_idle_deployments, unclaimed_landing
from shared.jobs import StagedInputs, evaluation_job, failure_with_log_tail, stage_azure, stage_local, training_job
from shared.live import champion_reference, live_counts, reference_profile_name, watched_prediction
from shared.planning import plan_candidates, seed_for_run
from shared.platform import (
    ComputeSpec,
    DeploymentFailedError,
    DeploymentLogsRequest,
    DeploymentMetrics,
    DeploymentRef,
    DeploymentSpec,
    EndpointSpec,
    InvalidRequestError,
    InvokeRequest,
    JobOutputRequest,
    MetricsQuery,
    ModelRegistration,
    NotFoundError,
    PlatformError,
    Traffic,
    TrafficUpdate,
)
from shared.policy import (
    PolicyInputError,
    RolloutState,
    live_map,
    next_rollout_action,
    parse_comparison,
    rollback_plan,
    traffic_moves,
)
from shared.profile import DatasetProfile, edges_reference, merge_profiles
from shared.publish import (
    ModelPromoted,
    ModelRegistered,
    RolloutRolledBack,
    ValidationFailed,
    make_event,
    run_completed_event,
)
from shared.registry import (
    ACTIVE_RUN_STATUSES,
    Candidate,
    Champion,
    ConcurrencyError,
    ModelVersion,
    Registry,
    RegistryError,
    RolloutStep,
    Run,
    run_id_for,
)
from shared.run_labels import batch_label_classes, binary_label_problem
from shared.runtime import get_runtime
from shared.spec import TriggerSpec
from shared.storage import (
    LANDING,
    MANIFESTS,
    QUARANTINE,
    BlobChangedError,
    BlobMissingError,
    BlobRef,
    BlobStore,
    Manifest,
    ManifestEntry,
    QuarantineRecord,
    StorageError,
)
from shared.validation import ValidationReport, validate
from shared.verdicts import keep_verdict, kept_verdict, verdict_name, verdict_profile
from shared.workflow import (
    BlobItem,
    CandidatePlan,
    JobRequest,
    JobResult,
    JobStatus,
    RunRequest,
    TriggerInfo,
    ValidationOutcome,
    blobs_dedupe_key,
    candidate_id,
    candidate_of_job,
    claims_left_out,
    deployment_name,
    job_name,
    usable_request,
)

bp = df.Blueprint()
logger = logging.getLogger("perennial.activities")
# Blob reads of one run (manifest lines, profiles) done side by side: a run trains on thousands of blobs, and one at
# a time, at a round trip or three each, that alone would outlast an activity (Azure SDK clients are thread-safe).
_PARALLEL_BLOB_READS = 8
# Blobs per validate_blobs activity: a chunk of new 12 MB batches validates in about 10 s, and its answer (about
# 300 bytes a blob) stays far below Durable's 64 KB message size, beyond which messages go through blob storage.
VALIDATE_CHUNK = 50
# And at most this many bytes per chunk: validation reads about 60-100 MB/s of CSV on one core, so a chunk of 4 GiB
# takes about a minute, well inside the host's 30-minute function timeout (host.json), however large the batches.
VALIDATE_CHUNK_BYTES = 4 * 1024**3
# How far back of the training window's start a run's own manifest may reach: the window was applied when the run
# listed landing, up to this long before it pins its manifest.
_RUN_TIME_ALLOWANCE = timedelta(days=1)

# --------------------------------------------------------------------------- process-wide clients


# Short local names for the process-wide clients (functions/clients.py).
_store, _registry, _platform, _publisher = clients.store, clients.registry, clients.platform, clients.publisher


def _legacy_profile_name(model: str, run_id: str, blob_name: str) -> str:
    """Where an older version of this app kept a blob's profile for one run (validated before shared.verdicts)."""
    import hashlib

    return f"{model}/{run_id}/profiles/{hashlib.sha256(blob_name.encode()).hexdigest()[:16]}.json"


def _champion_reference(model: str) -> DatasetProfile | None:
    """The training profile of the current champion: the reference for drift and histogram edges."""
    champion = _registry().champion(model)
    return champion_reference(_store(), _registry(), champion) if champion else None


def _job_json(job_name: str, path: str) -> Any:
    """A JSON file from a finished job's output folder, through the platform (local disk or the datastore)."""
    return json.loads(_platform().read_job_output(JobOutputRequest(job_name=job_name, path=path)))


# --------------------------------------------------------------------------- coordinator


@bp.activity_trigger(input_name="payload")
def coordinator_settings(payload: dict[str, Any]) -> dict[str, Any]:
    """The debounce window of a model (read from its spec, so orchestrators never read configuration)."""
    debounce = get_runtime().spec(payload["model"]).triggers.debounce
    return {"quiet_seconds": debounce.quiet_seconds, "max_wait_seconds": debounce.max_wait_seconds}


#: How far back pending_work looks for claims whose run was never recorded: a coordinator whose claim failed asks
#: for work again after its pause (CLAIM_PAUSE, 5 minutes).
ORPHAN_CLAIM_LOOKBACK = timedelta(days=1)
#: A claim younger than this is left alone: its run may still be on its way (an activity Azure runs twice).
ORPHAN_CLAIM_GRACE = timedelta(minutes=1)


@bp.activity_trigger(input_name="payload")
def pending_work(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Work the model's coordinator may not have heard of: requests accepted (pending runs, oldest first) and
    landing blobs no run has claimed. Their events may have been lost: a Python orchestrator's
    continue_as_new drops events it had not consumed, such as those raised while a run went on. Claims of a run
    that was never recorded (claim_run failed between the two) are released first, so their blobs are found."""
    model = payload["model"]
    registry = _registry()
    now = datetime.now(UTC)
    # Before the listing, so that a burst whose run record failed to follow its claims is found unclaimed again.
    if released := registry.release_unrecorded_claims(model, now - ORPHAN_CLAIM_LOOKBACK, now - ORPHAN_CLAIM_GRACE):
        logger.warning(
            "released %d blob claim(s) of %s whose run was never recorded: %s",
            len(released),
            model,
            ", ".join(sorted({c.run_id for c in released})),
        )
    work: list[dict[str, Any]] = []
    # The same runs the API's 409 sees (Registry.active_runs), oldest first.
    for run in reversed([r for r in registry.active_runs(model) if r.status == "pending"]):
        if (item := usable_request(run.details.get("work"), run.run_id)) is not None:
            work.append(item)
        else:
            logger.warning("pending run %s of %s carries no usable work item; left as it is", run.run_id, model)
    blobs = unclaimed_landing(get_runtime().spec(model), _store(), registry, now)
    if blobs:
        work.append({"kind": "blobs", "blobs": [b.dump() for b in blobs]})
    return work


@bp.activity_trigger(input_name="payload")
def claim_run(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Turn gathered work into one run: claim its blobs (a blob version trains once) and create the run record.

    Returns the RunRequest, or None when nothing is left to do (every blob already trained, or the request
    is a redelivery of a run that already finished), or ``{"busy": <run id>}`` while another run of the model
    is still running (nothing claimed; the coordinator waits and tries again).
    """
    model: str = payload["model"]
    blobs = [BlobItem.load(b) for b in payload.get("blobs", [])]
    requests = list(payload.get("requests", []))
    registry = _registry()
    # A request whose run already ended (a redelivered event, or one whose pending record was also found)
    # must not lend its id to this claim: the blobs would be claimed for a run that never starts.
    requests = [r for r in requests if _still_wanted(registry, model, str(r.get("run_id")))]
    requests = _without_blocked_alerts(registry, model, requests)
    if requests:
        first = requests[0]
        run_id = str(first["run_id"])
        trigger = TriggerInfo.load(first["trigger"])
        extra = [TriggerInfo.load(r["trigger"]).reason for r in requests[1:]]
        if extra:
            trigger = trigger.model_copy(update={"details": {**trigger.details, "also_requested": extra}})
    elif blobs:
        run_id = run_id_for(model, blobs_dedupe_key(blobs))
        names = ", ".join(sorted(b.name for b in blobs)[:5]) + (" …" if len(blobs) > 5 else "")
        trigger = TriggerInfo(
            kind="blob_created", reason=f"{len(blobs)} new blob(s) landed: {names}", source_event_id=run_id
        )
    else:
        return None
    # One run at a time per model. The coordinator waits for its run, but one that ended while its run went on
    # (terminated by an operator, failed on a bug) and was started again by the next blob or by housekeeping would
    # start a second run beside it, and a second rollout on the same endpoint. Nothing is claimed: it waits.
    others = [r for r in registry.active_runs(model, excluding=run_id) if r.status == "running"]
    if others:
        logger.info("%s waits: run %s of %s is still running", run_id, others[0].run_id, model)
        return {"busy": others[0].run_id}
    claimed = registry.claim_blobs(model, run_id, [(b.url, b.etag, b.size) for b in blobs]).claimed if blobs else []
    if blobs and not claimed and not requests:
        logger.info("every blob of this burst already trained; no run for %s", model)
        return None
    run = registry.create_run(
        Run(
            model=model,
            run_id=run_id,
            trigger_kind=trigger.kind,
            trigger_reason=trigger.reason,
            trigger_event_id=trigger.source_event_id,
            status="running",
            stage="created",
            instance_id=run_id,
            details={"trigger": trigger.dump()},
        )
    )
    if run.status not in ACTIVE_RUN_STATUSES:
        logger.info("run %s already finished (%s); the request was a redelivery", run_id, run.status)
        return None
    if run.status == "pending":  # created by the API when it accepted the request

        def start(r: Run) -> Run:
            # Only a run still pending starts: one that ended meanwhile (merged, or closed by hand) stays ended.
            if r.status != "pending":
                return r
            return replace(r, status="running", details={**r.details, "trigger": trigger.dump()})

        run = registry.update_run(model, run_id, start)
        if run.status not in ACTIVE_RUN_STATUSES:
            logger.info("run %s ended (%s) before it could start", run_id, run.status)
            return None
    claimed_ids = {(c.url, c.blob_etag) for c in claimed}
    mine = [b for b in blobs if (b.url, b.etag) in claimed_ids]
    for merged in requests[1:]:
        registry.mark_merged(model, str(merged["run_id"]), run_id)
    return RunRequest(model=model, run_id=run_id, trigger=trigger, blobs=mine).dump()


def _without_blocked_alerts(registry: Registry, model: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``requests`` less the monitors' alerts that a run since their arrival has answered (recorded ``suppressed``):
    two drift alerts that arrive together would otherwise retrain the model twice, back to back."""
    alerts = [r for r in requests if TriggerInfo.load(r["trigger"]).kind in MONITOR_KINDS]
    if not alerts:
        return requests
    queued = {str(r["run_id"]) for r in requests}
    spec = get_runtime().specs.get(model)  # None: the spec was removed while its requests waited
    cooldown = (spec.triggers if spec is not None else TriggerSpec()).cooldown
    blocked = queued_alert_blocked(registry.runs(model, limit=50), queued, datetime.now(UTC), cooldown)
    if blocked is None:
        return requests
    for alert in alerts:
        registry.mark_suppressed(model, str(alert["run_id"]), blocked)
        logger.warning("alert run %s of %s not started: %s", alert["run_id"], model, blocked)
    return [r for r in requests if r not in alerts]


def _still_wanted(registry: Registry, model: str, run_id: str) -> bool:
    run = registry.get_run(model, run_id)
    return run is None or run.status in ACTIVE_RUN_STATUSES


# --------------------------------------------------------------------------- run bookkeeping


@bp.activity_trigger(input_name="payload")
def record_stage(payload: dict[str, Any]) -> dict[str, Any]:
    """Record the run's stage; tell the orchestrator whether someone asked to abort."""

    stage_details = dict(payload.get("details", {}))
    if payload["stage"] == "awaiting_approval":
        # When the orchestrator's timer ends the wait (it starts it right after this), for GET /api/runs/{id}.
        hours = get_runtime().spec(payload["model"]).rollout.approval.timeout_hours
        stage_details["until"] = (datetime.now(UTC) + timedelta(hours=hours)).isoformat()

    def change(run: Run) -> Run:
        details = {**run.details, payload["stage"]: stage_details}
        return replace(run, stage=payload["stage"], details=details)

    run = _registry().update_run(payload["model"], payload["run_id"], change)
    return {"abort": run.abort_requested}


#: Run endings logged as warnings: nothing shipped, and someone may need to act.
_ENDINGS_TO_LOOK_AT = frozenset(
    {"failed", "training_failed", "rolled_back", "approval_timed_out", "aborted", "no_valid_data"}
)


@bp.activity_trigger(input_name="payload")
def finish_run(payload: dict[str, Any]) -> dict[str, Any]:
    """Record the outcome with its reasons (and ``error``, for a run that crashed) and publish RunCompleted
    (same event id on a retry)."""
    status: str = payload["status"]
    reasons = [str(r) for r in payload.get("reasons", [])]
    error = payload.get("error")

    def change(run: Run) -> Run:
        if run.status not in ACTIVE_RUN_STATUSES and run.status != status:
            # Already finished (say promoted, and then publishing RunCompleted failed, so the coordinator's
            # crash handler calls again with "failed"): the outcome stands; a later error is only added.
            return replace(run, error=str(error) if error else run.error)
        decision = {"promoted": "promote", "not_promoted": "reject"}.get(status, run.decision)
        # The orchestrator says "aborted on request"; the run's record knows who asked and why.
        recorded = [run.abort_reason()] if status == "aborted" else reasons
        return replace(
            run,
            status=status,
            stage="done",
            decision=decision,
            decision_reasons=recorded or run.decision_reasons,
            registered_version=payload.get("version") or run.registered_version,
            error=str(error) if error else run.error,
        )

    run = _registry().update_run(payload["model"], payload["run_id"], change)
    # What an operator's alert looks for (infra/modules/alerts.bicep: "ended failed", "ended rolled_back", …): a
    # warning for a run that shipped nothing for a reason someone may need to act on.
    level = logging.WARNING if run.status in _ENDINGS_TO_LOOK_AT else logging.INFO
    summary = "; ".join(run.decision_reasons)[:1000] or run.error or "no reason recorded"
    logger.log(level, "run %s of %s ended %s: %s", run.run_id, run.model, run.status, summary,
               extra={"model": run.model, "run_id": run.run_id})  # fmt: skip
    _publisher().publish([run_completed_event(run.model, run.run_id, run.status, run.decision, run.decision_reasons)])
    return {"run_id": run.run_id, "status": run.status}


# --------------------------------------------------------------------------- data


@bp.activity_trigger(input_name="payload")
def resolve_run_blobs(payload: dict[str, Any]) -> dict[str, Any]:
    """The blobs a run trains on (the model's landing folder now, or the request's selection) and the
    histogram edges every blob of the run is profiled on: the champion's reference edges, or None for a
    first model (the orchestrator then takes them from the first valid blob), so the profiles merge."""
    request = RunRequest.load(payload)
    store = _store()
    selection = request.trigger.details.get("blobs")
    if selection:  # the request's own choice: the training window does not apply
        refs = store.landing_selection(request.model, selection)
    else:
        window = get_runtime().spec(request.model).training.landed_since(datetime.now(UTC))
        refs = store.list_landing(request.model, window)
        if window is not None:  # the run's own claims train in it, whatever their age (claims_left_out)
            registry = _registry()
            run = registry.get_run(request.model, request.run_id)
            created = run.created_at if run is not None else None
            claimed = ((c.url, c.blob_etag) for c in registry.run_blobs(request.model, request.run_id, created))
            for name, etag in claims_left_out(claimed, [(r.name, r.etag) for r in refs], LANDING):
                with contextlib.suppress(BlobNameError, BlobMissingError):  # gone since: nothing to train
                    current = store.ref(LANDING, name)
                    if quoted_etag(current.etag) == etag:  # still the version claimed
                        refs.append(current)
    reference = _champion_reference(request.model)
    return {
        "blobs": [
            BlobItem(url=r.url, container=r.container, name=r.name, etag=r.etag, size=r.size).dump() for r in refs
        ],
        "edges": reference.edges() if reference is not None else None,
        "on_validation_failure": get_runtime().spec(request.model).triggers.on_validation_failure,
        # Validate in chunks (validate_blobs). An orchestration that recorded an answer without it replays as it
        # ran: one validate_blob per blob.
        "validate_chunk": VALIDATE_CHUNK,
        "validate_chunk_bytes": VALIDATE_CHUNK_BYTES,  # absent from answers recorded before: count alone
    }


def _manifest_entry(store: BlobStore, blob: BlobItem) -> ManifestEntry | StorageError:
    """The blob's manifest line, pinned to the version the run validated (with the hash its validation took; an
    older version of this app recorded none); the error when that version changed or went."""
    ref = BlobRef(container=LANDING, name=blob.name, url=blob.url, etag=blob.etag, size=blob.size)
    try:
        return store.manifest_entry(ref, blob.sha256)
    except (BlobChangedError, BlobMissingError) as exc:
        return exc


def _run_profiles(
    store: BlobStore, model: str, run_id: str, blobs: Sequence[BlobItem], edges: dict[str, list[float]] | None
) -> Iterator[DatasetProfile]:
    """The profiles of the run's blobs, fetched a few at a time side by side: merged as they come, so memory holds a
    handful of profiles, not one per blob of a large training set."""

    spec = get_runtime().spec(model)

    def fetch(blob: BlobItem) -> DatasetProfile:
        if blob.verdict is not None:  # kept with its verdict (shared.verdicts), or judged again if it expired
            ref = BlobRef(container=LANDING, name=blob.name, url=blob.url, etag=blob.etag, size=blob.size)
            return verdict_profile(store, blob.verdict, ref, spec.data, edges, spec.task)
        # Validated by an older version of this app, which kept a copy per run.
        return DatasetProfile.from_dict(store.get_json(MANIFESTS, _legacy_profile_name(model, run_id, blob.name)))

    with ThreadPoolExecutor(max_workers=_PARALLEL_BLOB_READS) as pool:
        for start in range(0, len(blobs), _PARALLEL_BLOB_READS * 4):
            yield from pool.map(fetch, blobs[start : start + _PARALLEL_BLOB_READS * 4])


@bp.activity_trigger(input_name="payload")
def validate_blob(payload: dict[str, Any]) -> dict[str, Any]:
    """Validate one blob against the contract in one streaming pass; quarantine it with its report if it fails.
    Says whether the run has been asked to abort meanwhile (a first model validates its blobs one by one)."""
    outcome = _validate_one(payload)
    run = _registry().get_run(payload["model"], payload["run_id"])
    return {**outcome, "run_aborted": True} if run is not None and run.abort_requested else outcome


@bp.activity_trigger(input_name="payload")
def validate_blobs(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """``validate_blob`` for a chunk of a run's blobs (``blobs``, all binned on ``edges``), in order.

    One activity per chunk instead of one per blob keeps a run's orchestration history short (it is replayed
    whole at every step), and each outcome leaves out the blob's own histogram edges, which only the first blob
    of a first model's run is asked for. Retried whole: kept verdicts (shared.verdicts) make the blobs a failed
    attempt already judged cheap to judge again, and a quarantined one finds its verdict."""
    run = {key: value for key, value in payload.items() if key != "blobs"}
    outcomes = []
    for blob in payload["blobs"]:
        outcome = ValidationOutcome.load(_validate_one({**run, "blob": blob}))
        outcomes.append(outcome.model_copy(update={"edges": None}).dump())
    return outcomes


def _validate_one(payload: dict[str, Any]) -> dict[str, Any]:
    model, run_id = payload["model"], payload["run_id"]
    blob = BlobItem.load(payload["blob"])
    spec = get_runtime().spec(model)
    store = _store()
    try:
        store.path(LANDING, blob.name)
    except BlobNameError as exc:  # an unsafe name is never read; the run goes on with the other blobs
        return ValidationOutcome(blob=blob, ok=False, summary=f"{exc.message}; rename it ({exc.hint})").dump()
    # The version the run listed, read pinned to its eTag: the manifest later pins the same one, so what trains is
    # what was validated (re-reading "the current version" here let an overwrite slip in unvalidated).
    ref = BlobRef(container=LANDING, name=blob.name, url=blob.url, etag=blob.etag, size=blob.size)
    edges = payload.get("edges")
    # A version an earlier run passed against the same contract and edges passes again: read it once in its life.
    kept_name = verdict_name(model, ref.url, ref.etag, spec.data, edges, spec.task)
    if (kept := kept_verdict(store, kept_name)) is not None:
        learnt = {"sha256": kept.outcome.blob.sha256, "verdict": kept_name}
        return kept.outcome.model_copy(update={"blob": blob.model_copy(update=learnt)}).dump()
    reference = edges_reference(edges) if edges else None
    try:
        stream, digest = store.open_hashed(ref)
        with stream:
            report = validate(stream, spec.data, reference=reference, name=f"{LANDING}/{ref.name}", task=spec.task)
            sha256 = digest.hexdigest() if report.ok else None  # the same download: no second read for the manifest
    except (BlobMissingError, BlobChangedError) as exc:
        # A retry of this activity after it quarantined the blob (and failed later, announcing it): the same verdict.
        if (record := store.quarantined(ref)) is not None:
            return _announce_quarantine(model, run_id, blob, record, ValidationReport.from_dict(store.get_json(
                QUARANTINE, record.report.name)))  # fmt: skip
        gone = "deleted" if isinstance(exc, BlobMissingError) else "overwritten"
        summary = f"{gone} since this run listed it: not trained (a new version has its own event and run)"
        return ValidationOutcome(blob=blob, ok=False, skipped=True, summary=summary).dump()
    except (AzureError, StorageError, ConnectionError, TimeoutError):
        raise  # a read that failed says nothing about the data: the orchestrator retries the activity
    except Exception as exc:  # a bug of ours: never a verdict on the data, and it must not stop every later run
        logger.exception("could not validate %s; left in landing, not trained", ref.name)
        summary = (
            f"could not be validated ({type(exc).__name__}: {str(exc)[:200]}): left in landing and not trained; "
            "this is a perennial bug, report it with the file"
        )
        return ValidationOutcome(blob=blob, ok=False, skipped=True, summary=summary).dump()
    if report.ok and report.profile is not None:
        passed = ValidationOutcome(
            blob=blob.model_copy(update={"sha256": sha256, "verdict": kept_name}),
            ok=True,
            summary=report.summary().splitlines()[0],
            warnings=len(report.warnings),
            rows=report.rows,
            edges=report.profile.edges(),
        )
        try:  # the profile too: written once, here
            keep_verdict(store, kept_name, passed, report.profile)
        except (AzureError, StorageError) as exc:  # a cache: a verdict not kept costs a read, and loses nothing
            logger.warning("could not keep the verdict on %s (%s): the next run reads it again", ref.name, exc)
        return passed.dump()
    return _announce_quarantine(
        model, run_id, blob, store.quarantine(ref, report.to_dict(include_profile=False)), report
    )


def _announce_quarantine(
    model: str, run_id: str, blob: BlobItem, record: QuarantineRecord, report: ValidationReport
) -> dict[str, Any]:
    """Publish ``ValidationFailed`` for a quarantined blob (the same event id on a retry) and answer its outcome."""
    ref = record.source
    errors = [f"{f.check}{f' [{f.column}]' if f.column else ''}: {f.message}" for f in report.errors]
    _publisher().publish(
        [
            make_event(
                ValidationFailed(
                    model=model, blob_url=ref.url, blob_etag=ref.etag, report_url=record.report.url, errors=errors
                ),
                event_id=f"{run_id}:invalid:{ref.etag}",
            )
        ]
    )
    logger.warning("quarantined %s: %s", ref.name, "; ".join(errors))
    return ValidationOutcome(
        blob=blob,
        ok=False,
        summary=report.summary().splitlines()[0],
        errors=len(report.errors),
        warnings=len(report.warnings),
        rows=report.rows,
        quarantined_to=record.blob.url,
    ).dump()


@bp.activity_trigger(input_name="payload")
def prepare_training(payload: dict[str, Any]) -> dict[str, Any]:
    """Pin the data (manifest + hashes), merge profiles and measure drift, stage inputs, plan candidates."""
    model, run_id = payload["model"], payload["run_id"]
    runtime = get_runtime()
    spec = runtime.spec(model)
    store, registry, platform = _store(), _registry(), _platform()
    blobs = [BlobItem.load(b) for b in payload["blobs"]]

    # Pinned to the versions validate_blob read (their eTags): one overwritten or deleted since is left out (its
    # new version has its own event), not trained unvalidated. A retry finds the manifest written once.
    try:
        manifest, manifest_url = store.read_manifest(model, run_id), store.manifest_url(model, run_id)
    except BlobMissingError:  # the first attempt
        entries: list[ManifestEntry] = []
        left_out: list[str] = []
        with ThreadPoolExecutor(max_workers=_PARALLEL_BLOB_READS) as pool:
            for blob, entry in zip(blobs, pool.map(functools.partial(_manifest_entry, store), blobs), strict=True):
                if isinstance(entry, ManifestEntry):
                    entries.append(entry)
                else:
                    left_out.append(f"{blob.name} was left out: {entry}")
        if not entries:
            return {"no_data": left_out}
        manifest, manifest_url = store.write_manifest(Manifest(model=model, run_id=run_id, blobs=tuple(entries)))
        for reason in left_out:
            logger.warning("%s: %s", run_id, reason, extra={"model": model, "run_id": run_id})
    blobs = [b for b in blobs if b.name in {e.name for e in manifest.blobs}]
    # Every version the run trains on is claimed for it, also one that landed after the run claimed its work: a
    # second run would otherwise train on exactly this data again, only re-rolling the champion.
    # (Only versions no run has claimed: one partition query instead of a read per blob of a large landing folder,
    # and of the claims no older than the training window allows, less a day for the time this run has taken.)
    window = spec.training.landed_since(datetime.now(UTC) - _RUN_TIME_ALLOWANCE)
    seen = registry.seen_etags(model, claimed_since=window)
    registry.claim_blobs(model, run_id, [(e.url, e.etag, e.size) for e in manifest.blobs if e.etag not in seen])

    label_classes: dict[str, frozenset[str] | None] = {}

    def noting_labels(profiles: Iterator[DatasetProfile]) -> Iterator[DatasetProfile]:
        for blob, batch in zip(blobs, profiles, strict=True):
            label_classes[blob.name] = batch_label_classes(spec.data, batch)
            yield batch

    profile = merge_profiles(noting_labels(_run_profiles(store, model, run_id, blobs, payload.get("edges"))))
    if (problem := binary_label_problem(spec.data, spec.task, label_classes)) is not None:
        return {"no_data": [problem]}  # before any job: the batches are claimed, and a fixed upload is a new version
    store.put_json(MANIFESTS, reference_profile_name(model, run_id), profile.to_dict())
    drift_summary: dict[str, Any] = {}
    reference = _champion_reference(model)
    if reference is not None:
        from shared.drift import compare

        report = compare(reference, profile, spec.triggers.drift, columns=[c.name for c in spec.data.feature_columns])
        drift_summary = {
            "drifted": report.drifted,
            "drifted_share": report.drifted_share,
            "drifted_columns": report.drifted_columns,
            "threshold_share": report.thresholds.get("drifted_share"),
            # The statistics behind each column's verdict (rounded: this is a record for people, not a profile).
            "columns": {
                c.column: {
                    "drifted": c.drifted,
                    **{
                        name: round(float(value), 4)
                        for name in ("psi", "wasserstein", "jensen_shannon", "ks_pvalue")
                        if (value := getattr(c, name)) is not None
                    },
                    "reasons": list(c.reasons),
                }
                for c in report.columns
            },
        }

    if runtime.settings.platform == "local":
        staged = stage_local(store, manifest, spec, runtime.settings.state_dir.resolve())
    else:
        staged = stage_azure(store, manifest, spec)
    compute = platform.ensure_compute(
        ComputeSpec(name=spec.training.compute, instance_type=spec.training.instance_type)
    )
    if compute.instance_type.lower() != spec.training.instance_type.lower():
        # Jobs run on the cluster's own VM size: the spec's only creates a missing cluster.
        logger.warning(
            "compute %s runs %s, not training.instance_type %s of %s: its jobs run on %s (resize the cluster, "
            "or set training.instance_type to match)",
            compute.name,
            compute.instance_type,
            spec.training.instance_type,
            model,
            compute.instance_type,
        )

    champion = registry.champion(model)
    champion_version = registry.version(model, champion.version) if champion else None
    champion_params = champion_version.params if champion_version else None
    plans = plan_candidates(spec.training, seed_for_run(run_id), champion_params or None)
    registry.save_candidates(
        [
            Candidate(
                model=model, run_id=run_id, candidate_id=candidate_id(p.index), params=dict(p.params), rationale=p.why
            )
            for p in plans
        ]
    )

    def change(run: Run) -> Run:
        return replace(
            run, manifest_url=manifest_url, details={**run.details, "drift": drift_summary, "rows": profile.rows}
        )

    registry.update_run(model, run_id, change)
    return {
        "candidates": [CandidatePlan(index=p.index, params=dict(p.params), why=p.why).dump() for p in plans],
        "job_args": {"inputs": staged.dump()},
        "primary_metric": spec.promotion.primary_metric,
        "timeout_minutes": spec.training.timeout_minutes,
        "queue_timeout_minutes": spec.training.queue_timeout_minutes,
        "max_retries": spec.training.max_retries,
        "approval_required": spec.rollout.approval.required,
        "approval_timeout_hours": spec.rollout.approval.timeout_hours,
        "drift": drift_summary,
    }


# --------------------------------------------------------------------------- jobs


def _job_spec(job: JobRequest) -> Any:
    spec = get_runtime().spec(job.model)
    inputs = StagedInputs.load(job.args["inputs"])
    if job.kind == "train":
        previous = job_name(job.base_name, job.attempt - 1) if job.resume and job.attempt > 0 else None
        return training_job(spec, job.job_name, inputs, job.args.get("params", {}), job.run_id, resume_from=previous)
    champion = _registry().champion(job.model)
    champion_ref = f"azureml:{job.model}:{champion.version}" if champion else None
    return evaluation_job(spec, job.job_name, inputs, job.args["challenger"], champion_ref, job.run_id)


@bp.activity_trigger(input_name="payload")
def submit_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Submit (idempotent by job name: a retry finds the job its first attempt created)."""
    job = JobRequest.load(payload)
    state = _platform().submit_job(_job_spec(job))
    logger.info("submitted %s (%s)", job.job_name, state.status, extra={"run_id": job.run_id})
    if job.kind == "train":
        _mark_candidate_submitted(job, state.name)
    return {"name": state.name, "status": state.status}


def _mark_candidate_submitted(job: JobRequest, job_name: str) -> None:
    """Show the candidate's job while it trains (``record_candidates`` writes the outcome when all are done).
    Only a display: a failure to write it is logged, never a failed submission."""
    candidate = candidate_of_job(job.base_name)
    registry = _registry()
    try:
        current = next((c for c in registry.candidates(job.model, job.run_id) if c.candidate_id == candidate), None)
        if current is not None and current.status in ("planned", "submitted"):
            registry.save_candidate(replace(current, job_name=job_name, status="submitted"))
    except (RegistryError, ConcurrencyError) as exc:
        logger.warning("candidate %s of %s: job %s not recorded (%s)", candidate, job.run_id, job_name, exc)


@bp.activity_trigger(input_name="payload")
def job_status(payload: dict[str, Any]) -> dict[str, Any]:
    """The job's phase; when it completed, its metrics (train) or comparison (evaluate). Honours an abort, and
    cancels the job of a run that has already ended (one that crashed): nobody would read its result."""
    job = JobRequest.load(payload)
    platform = _platform()
    run = _registry().get_run(job.model, job.run_id)
    try:
        if run is not None and (run.abort_requested or run.status not in ACTIVE_RUN_STATUSES):
            state = platform.cancel_job(job.job_name)
            why = "aborted" if run.abort_requested else f"the run has ended ({run.status})"
            return JobStatus(name=job.job_name, phase="canceled", status=state.status, error=why).dump()
        state = platform.get_job(job.job_name)
    except NotFoundError as exc:
        return JobStatus(name=job.job_name, phase="not_found", status="NotFound", error=str(exc)).dump()
    metrics: dict[str, Any] = {}
    if state.phase == "completed":
        output = "metrics.json" if job.kind == "train" else "comparison.json"
        try:
            metrics = _job_json(state.name, output)
        except (NotFoundError, InvalidRequestError, ValueError) as exc:
            # A job that "succeeded" without its result is a failed attempt (retried per spec), not a crash
            # of the run that would leave its sibling jobs running.
            error = f"the job completed without a readable {output}: {exc}"
            return JobStatus(name=state.name, phase="failed", status=state.status, error=error).dump()
    return JobStatus(
        name=state.name,
        phase=state.phase,
        status=state.status,
        outputs=state.outputs_uri,
        error=failure_with_log_tail(platform, state) if state.phase == "failed" else state.error,
        metrics=metrics,
        retryable=state.retryable,
    ).dump()


@bp.activity_trigger(input_name="payload")
def cancel_job(payload: dict[str, Any]) -> dict[str, Any]:
    job = JobRequest.load(payload)
    state = _platform().cancel_job(job.job_name)
    return {"name": state.name, "status": state.status}


@bp.activity_trigger(input_name="payload")
def record_candidates(payload: dict[str, Any]) -> int:
    """Write each candidate's job, outcome and validation metrics into the registry."""
    registry = _registry()
    model, run_id = payload["model"], payload["run_id"]
    by_id = {c.candidate_id: c for c in registry.candidates(model, run_id)}
    for raw in payload["results"]:
        result = JobResult.load(raw)
        current = by_id.get(candidate_of_job(result.base_name))
        if current is None:
            continue
        numeric = {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}
        error = (result.error or None) if result.outcome != "completed" else None
        registry.save_candidate(
            replace(current, job_name=result.job_name, status=result.outcome, metrics=numeric, error=error)
        )
    return len(payload["results"])


# --------------------------------------------------------------------------- decide and register


@bp.activity_trigger(input_name="payload")
def decide_promotion(payload: dict[str, Any]) -> dict[str, Any]:
    """Apply the spec's promotion policy to the evaluation; the reasons are recorded either way."""
    model, run_id = payload["model"], payload["run_id"]
    evaluation = JobResult.load(payload["evaluation"])
    if evaluation.outcome != "completed":
        reasons = [f"evaluation {evaluation.job_name} {evaluation.outcome}: {evaluation.error}"]
        return {"promote": False, "reasons": reasons, "decision": None}
    try:
        comparison = parse_comparison(evaluation.metrics)
    except PolicyInputError as exc:
        return {"promote": False, "reasons": [f"the evaluation's comparison.json is unusable: {exc}"], "decision": None}
    try:
        decision = policy.decide_promotion(comparison, get_runtime().spec(model).promotion)
    except PolicyInputError as exc:  # the spec's checks refuse this at start-up; a spec changed since must not crash
        return {"promote": False, "reasons": [f"the promotion policy could not decide: {exc}"], "decision": None}
    evaluated = candidate_of_job(JobResult.load(payload["best"]).base_name)
    # Runs of a model are one at a time, so the champion now is the one the evaluation scored.
    # (Also when the champion could not be scored: the version then replaced that one, on its floors.)
    compared = comparison.champion is not None or comparison.champion_unscorable is not None
    champion = _registry().champion(model) if compared else None

    def change(run: Run) -> Run:
        # The holdout comparison the decision rests on, which candidate it scored and the champion it was compared
        # with (GET /api/runs/{id}; register_model copies the champion into the version's lineage).
        details = {
            **run.details,
            "evaluation": evaluation.metrics,
            "evaluated_candidate": evaluated,
            "compared_with": champion.version if champion is not None else None,
        }
        return replace(
            run,
            decision="promote" if decision.promote else "reject",
            decision_reasons=list(decision.reasons),
            details=details,
        )

    _registry().update_run(model, run_id, change)
    return {
        "promote": decision.promote,
        "review": decision.needs_review,  # promote only with a person's approval (an unsettled guardrail)
        "reasons": [decision.summary, *decision.reasons],
        "decision": decision.to_dict(),
    }


@bp.activity_trigger(input_name="payload")
def register_model(payload: dict[str, Any]) -> dict[str, Any]:
    """Register the winner with its full lineage (once: a retry finds the version tagged with this run)."""
    model, run_id = payload["model"], payload["run_id"]
    best = JobResult.load(payload["best"])
    evaluation = JobResult.load(payload["evaluation"])
    registry, platform, store = _registry(), _platform(), _store()
    run = registry.require_run(model, run_id)
    stored = store.stored_manifest(model, run_id)
    chosen = candidate_of_job(best.base_name)
    candidate = next((c for c in registry.candidates(model, run_id) if c.candidate_id == chosen), None)
    card: dict[str, Any] = {}
    try:
        card = _job_json(best.job_name, "model_card.json")
    except (PlatformError, ValueError):
        logger.warning("%s has no readable model_card.json; lineage lacks code and package versions", best.job_name)
        card = {}

    existing = next((v for v in platform.list_model_versions(model) if v.tags.get("perennial_run") == run_id), None)
    version = existing or platform.register_model(
        ModelRegistration(
            name=model,
            job_name=best.job_name,
            description=f"{model} trained by run {run_id}: {run.trigger_reason}",
            tags={"perennial_run": run_id, "perennial_candidate": chosen},
            properties={
                "trigger": run.trigger_reason[:500],
                "manifest": stored.url,
                "manifest_sha256": stored.sha256,
                "primary_metric": str(best.metrics.get(get_runtime().spec(model).promotion.primary_metric)),
            },
        )
    )
    record = registry.register_version(
        ModelVersion(
            model=model,
            version=version.version,
            run_id=run_id,
            candidate_id=chosen,
            trigger_kind=run.trigger_kind,
            trigger_reason=run.trigger_reason,
            trigger_event_id=run.trigger_event_id,
            manifest_url=stored.url,
            manifest_sha256=stored.sha256,
            data_files=len(stored.manifest.blobs),
            data_bytes=stored.manifest.total_bytes,
            code_version=str(card.get("code_version", "")),
            environment=json.dumps(card.get("packages", {}), sort_keys=True),
            params=dict(candidate.params) if candidate else {},
            metrics={k: float(v) for k, v in best.metrics.items() if isinstance(v, int | float)},
            # Which champion this version beat (None: a first model, judged on its floors alone).
            evaluation={**evaluation.metrics, "compared_with": run.details.get("compared_with")},
        )
    )
    registry.update_run(model, run_id, lambda r: replace(r, registered_version=record.version))
    _publisher().publish(
        [
            make_event(
                ModelRegistered(model=model, version=record.version, run_id=run_id, metrics=record.metrics),
                event_id=f"{run_id}:registered",
            )
        ]
    )
    return {"version": record.version}


# --------------------------------------------------------------------------- staged rollout


def _sample(
    metrics: DeploymentMetrics, watched: Callable[[object], bool], live: tuple[int, int] = (0, 0)
) -> DeploymentSample:
    """The canary's view of one deployment: health metrics, how many predictions were the ``watched`` class (the
    positive-rate gate's), and (labelled, correct) once labels arrived."""
    successes = metrics.requests - metrics.errors
    positives = sum(1 for c in metrics.predicted_classes if watched(c))
    labelled, correct = live
    return DeploymentSample(
        deployment=metrics.deployment,
        requests=metrics.requests,
        errors=metrics.errors,
        latencies_ms=tuple(metrics.latencies_ms),
        p50_ms=metrics.p50_ms,
        p95_ms=metrics.p95_ms,
        p99_ms=metrics.p99_ms,
        predicted_positive=min(positives, successes),
        labelled=labelled,
        correct=min(correct, labelled),
        p95_windows=tuple(WindowP95(w.start, w.p95_ms, w.requests) for w in metrics.p95_windows),
    )


@bp.activity_trigger(input_name="payload")
def rollout_prepare(payload: dict[str, Any]) -> dict[str, Any]:
    """Ensure the endpoint and create the challenger deployment (name = f(model version): a retry finds it)."""
    model, version = payload["model"], str(payload["version"])
    spec = get_runtime().spec(model)
    platform, registry = _platform(), _registry()
    endpoint = spec.endpoint_name
    platform.ensure_endpoint(EndpointSpec(name=endpoint))
    champion = registry.champion(model)
    champion_deployment = champion.deployment if champion and champion.deployment else None
    if champion_deployment and champion_deployment not in {d.name for d in platform.list_deployments(endpoint)}:
        champion_deployment = None  # the champion's deployment is gone: treat this as a first rollout
    challenger = deployment_name(model, version)
    plan: dict[str, Any] = {
        "endpoint": endpoint,
        "champion": champion_deployment,
        "challenger": challenger,
        "steps": list(spec.rollout.steps),
        "bake_minutes": spec.rollout.bake_minutes,
        "shadow": spec.rollout.shadow.enabled,
        "shadow_bake_minutes": spec.rollout.shadow.bake_minutes,
        "rollback_step_minutes": spec.rollout.rollback_step_minutes,
    }
    run = registry.get_run(model, payload["run_id"])
    if run is not None and run.abort_requested:  # asked to stop before anything was deployed
        plan["error"] = f"{run.abort_reason()}: {challenger} was not deployed"
        _record_step(payload, "deploy", {}, {}, "aborted", {"deployment": challenger})
        return plan
    try:
        state = platform.create_or_update_deployment(_deployment_spec(model, version, payload["run_id"]))
    except DeploymentFailedError as exc:
        plan["error"] = f"deployment {challenger} failed: {exc}"
    else:
        plan["provisioning"] = state.provisioning  # Azure takes minutes: the orchestrator polls on timers
        if state.provisioning:
            return plan  # the deploy step is recorded by deployment_provisioned once it ends
    _record_step(payload, "deploy", {}, {}, "fail" if "error" in plan else "pass", {"deployment": challenger})
    return plan


@bp.activity_trigger(input_name="payload")
def deployment_provisioned(payload: dict[str, Any]) -> dict[str, Any]:
    """Where the provisioning of ``challenger`` on ``endpoint`` stands: ``{"provisioning": True}`` while the
    platform still works on it, ``{"provisioning": False}`` once it serves, ``{"error": ...}`` if it failed
    (or is gone). The deploy step is recorded when it ends."""
    endpoint, challenger = payload["endpoint"], payload["challenger"]
    run = _registry().get_run(payload["model"], payload["run_id"])
    if run is not None and run.abort_requested:  # no need to wait for a deployment that will go at once
        _record_step(payload, "deploy", {}, {}, "aborted", {"deployment": challenger})
        return {
            "provisioning": False,
            "error": f"{run.abort_reason()}: {challenger} was removed before it took traffic",
        }
    try:
        state = _platform().get_deployment(DeploymentRef(endpoint, challenger))
    except NotFoundError:
        error = f"deployment {challenger} disappeared while it was provisioned (deleted by hand?); roll it out again"
    else:
        if state.provisioning:
            return {"provisioning": True, "state": state.provisioning_state}
        if state.provisioning_state == "Succeeded":
            _record_step(payload, "deploy", {}, {}, "pass", {"deployment": challenger})
            return {"provisioning": False, "state": state.provisioning_state}
        said = f" ({state.error})" if state.error else ""
        error = (
            f"deployment {challenger} ended {state.provisioning_state}{said}; its log ends: "
            f"{_log_tail(endpoint, challenger)} (fix the model or score.py, then roll the version out again)"
        )
    _record_step(payload, "deploy", {}, {}, "fail", {"deployment": challenger, "error": error})
    return {"provisioning": False, "error": error}


def _log_tail(endpoint: str, deployment: str, lines: int = 5) -> str:
    """The last lines of a deployment's container log, for a failure's reason (best effort: a platform that
    cannot give them does not hide the failure)."""
    try:
        text = _platform().deployment_logs(DeploymentLogsRequest(endpoint, deployment, lines=lines))
    except PlatformError as exc:
        return f"(not readable: {exc.message})"
    tail = " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())
    return tail[-600:] or "(empty)"


def _deployment_spec(model: str, version: str, run_id: str) -> DeploymentSpec:
    """The deployment of one model version (its name is a function of the version, so a retry finds it)."""
    spec = get_runtime().spec(model)
    return DeploymentSpec(
        endpoint=spec.endpoint_name,
        name=deployment_name(model, version),
        model_name=model,
        model_version=version,
        instance_type=spec.rollout.instance_type,
        instance_count=spec.rollout.instance_count,
        tags={MODEL_TAG: model, "perennial_run": run_id},
    )


def _restore_capacity(model: str, endpoint: str, deployment: str) -> bool:
    """Scale a deployment back up to the spec's instance count before it takes traffic back; True if it was.

    It does not wait for the new instances: traffic going back to a working deployment comes first, and the
    deployment keeps serving on its current instances while Azure adds the others."""
    platform = _platform()
    state = platform.get_deployment(DeploymentRef(endpoint, deployment))
    wanted = get_runtime().spec(model).rollout.instance_count
    if state.instance_count >= wanted:
        return False
    logger.info(
        "scaling %s back from %d to %d instance(s) before it takes traffic", deployment, state.instance_count, wanted
    )
    platform.create_or_update_deployment(
        DeploymentSpec(
            endpoint=endpoint,
            name=deployment,
            model_name=state.model_name,
            model_version=state.model_version,
            instance_type=state.instance_type,
            instance_count=wanted,
            tags={MODEL_TAG: model},
        )
    )
    return True


def _record_step(
    payload: dict[str, Any],
    step: str,
    traffic: dict[str, int],
    mirror: dict[str, int],
    verdict: str,
    evidence: dict[str, Any],
) -> None:
    registry = _registry()
    steps = registry.rollout_steps(payload["model"], payload["run_id"])
    last = steps[-1] if steps else None
    # Compared as stored (JSON: tuples come back as lists), so a retried activity that failed after recording
    # does not record the same step again.
    stored = json.loads(json.dumps(evidence, default=str))
    if last is not None and (last.step, last.traffic, last.mirror_traffic, last.verdict, last.evidence) == (
        step,
        traffic,
        mirror,
        verdict,
        stored,
    ):
        return
    registry.record_rollout_step(
        RolloutStep(
            model=payload["model"],
            run_id=payload["run_id"],
            index=len(steps),
            step=step,
            traffic=traffic,
            mirror_traffic=mirror,
            verdict=verdict,
            evidence=evidence,
        )
    )


@bp.activity_trigger(input_name="payload")
def rollout_smoke(payload: dict[str, Any]) -> dict[str, Any]:
    """Invoke the challenger directly with the model's sample input: it must load and answer in time.

    A failed challenger is deleted, unless ``keep_on_failure`` (a rollback testing the previous champion's
    kept deployment, which takes no traffic yet and stays for its grace period)."""
    spec = get_runtime().spec(payload["model"])
    platform = _platform()
    version = platform.get_model(payload["model"], str(payload["version"]))
    source_job = version.job_name or version.properties.get("perennial.job")
    try:
        if source_job is None:
            raise NotFoundError("training job", f"{version.name}:{version.version}", "register models from a job")
        sample = _job_json(source_job, "sample_input.json")
    except (PlatformError, ValueError) as exc:
        reason = f"the model's sample_input.json could not be read ({exc})"
        _record_step(payload, "smoke", {}, {}, "fail", {"result": reason})
        if not payload.get("keep_on_failure"):
            _remove_challenger(payload)
        return {"ok": False, "reason": reason}
    try:
        result = platform.invoke(
            InvokeRequest(
                endpoint=payload["endpoint"],
                payload=sample,
                deployment=payload["challenger"],
                timeout_seconds=spec.rollout.probe_timeout_seconds,
            )
        )
    except PlatformError as exc:
        result_ok, reason = False, str(exc)
    else:
        result_ok = result.status_code == 200
        reason = f"HTTP {result.status_code} in {result.latency_ms:.0f} ms: {str(result.body)[:300]}"
    _record_step(payload, "smoke", {}, {}, "pass" if result_ok else "fail", {"result": reason})
    if not result_ok and not payload.get("keep_on_failure"):
        _remove_challenger(payload)
    answer: dict[str, Any] = {"ok": result_ok, "reason": reason}
    run = _registry().get_run(payload["model"], payload["run_id"])
    if run is not None and run.abort_requested:  # the rollout stops before the challenger takes any traffic
        answer["abort"] = f"{run.abort_reason()}: {payload['challenger']} was removed before it took traffic"
    return answer


def _remove_challenger(payload: dict[str, Any]) -> None:
    """Put all live traffic back on the champion (if any) and delete the challenger deployment."""
    platform = _platform()
    endpoint, champion, challenger = payload["endpoint"], payload.get("champion"), payload["challenger"]
    current = platform.get_traffic(endpoint)
    if current.live_percent(challenger) or current.mirror_percent(challenger):
        live = {champion: 100} if champion else {}
        # With no champion to return to, a failed first model is taken off: the endpoint serves nothing.
        update = TrafficUpdate(endpoint, Traffic(live=live, mirror={}), allow_no_live_traffic=champion is None)
        platform.set_traffic(update)
    with contextlib.suppress(NotFoundError):
        platform.delete_deployment(DeploymentRef(endpoint, challenger))


@bp.activity_trigger(input_name="payload")
def rollout_apply(payload: dict[str, Any]) -> dict[str, Any]:
    """Set up a rollout step (``action`` None) or carry out an action's mirror and traffic maps, in order;
    which moves is :func:`shared.policy.traffic_moves`' decision (a paced rollback passes ``plan_index``)."""
    platform = _platform()
    spec = get_runtime().spec(payload["model"])
    endpoint, champion, challenger = payload["endpoint"], payload.get("champion"), payload["challenger"]
    moves = traffic_moves(
        champion, challenger, int(payload["step_index"]), spec.rollout, payload.get("action"), payload.get("plan_index")
    )
    if moves.restore_champion_capacity and champion is not None:
        _restore_capacity(payload["model"], endpoint, champion)  # the champion must carry its load again
    current = platform.get_traffic(endpoint)
    if moves.mirror is not None and dict(current.mirror) != moves.mirror:
        current = platform.set_traffic(TrafficUpdate(endpoint, Traffic(live=current.live, mirror=moves.mirror)))
    for live in moves.maps:
        current = platform.set_traffic(TrafficUpdate(endpoint, Traffic(live=live, mirror=current.mirror)))
    if moves.remove_challenger:
        _remove_challenger(payload)
        current = platform.get_traffic(endpoint)
    return {"live": dict(current.live), "mirror": dict(current.mirror), "applied_at": datetime.now(UTC).isoformat()}


@bp.activity_trigger(input_name="payload")
def rollout_analyse(payload: dict[str, Any]) -> dict[str, Any]:
    """Compare challenger vs champion over the bake window and decide: advance, hold, roll back or complete."""
    model = payload["model"]
    spec = get_runtime().spec(model)
    platform = _platform()
    endpoint, champion, challenger = payload["endpoint"], payload.get("champion"), payload["challenger"]
    step_index = int(payload["step_index"])
    start = datetime.fromisoformat(payload["window_start"])
    end = datetime.now(UTC)
    positive = spec.data.positive_class  # score.py records class indices: predicts_positive reads them
    shadow = step_index == -1
    challenger_metrics = platform.deployment_metrics(
        MetricsQuery(endpoint=endpoint, deployment=challenger, start=start, end=end, include_mirrored=shadow)
    )

    def labels(deployment: str, mirrored: bool = False) -> tuple[int, int]:
        """Delayed labels joined to this window's predictions (none yet is normal: the gate then waits)."""
        try:
            return live_counts(
                platform, _store(), model, endpoint, deployment, start, end, spec=spec, include_mirrored=mirrored
            )
        except (PlatformError, StorageError, OSError, ValueError) as exc:
            logger.warning("live labels of %s unavailable for this bake: %s", deployment, exc)
            return (0, 0)

    champion_metrics = (
        platform.deployment_metrics(MetricsQuery(endpoint=endpoint, deployment=champion, start=start, end=end))
        if champion
        else None
    )
    watched = watched_prediction(
        spec.task,
        positive,
        challenger_metrics.predicted_classes,
        champion_metrics.predicted_classes if champion_metrics else (),
    )
    champion_sample = _sample(champion_metrics, watched, labels(champion)) if champion and champion_metrics else None
    challenger_sample = _sample(challenger_metrics, watched, labels(challenger, mirrored=shadow))
    # A multiclass model's watched class was picked after looking: the canary corrects its test for the choice.
    verdict = analyse_canary(challenger_sample, champion_sample, spec.rollout.gates, watched=watched.chosen)
    traffic = platform.get_traffic(endpoint)
    run = _registry().get_run(model, payload["run_id"])
    # A first model is judged on the gates only, at its single (final) step; the policy needs a champion name.
    state_champion = champion or f"{challenger}-none"
    state = RolloutState(
        champion=state_champion,
        challenger=challenger,
        step_index=step_index,
        traffic=dict(traffic.live),
        extensions_used=int(payload["extensions_used"]),
    )
    if (
        champion is None
        and verdict.verdict == "inconclusive"
        and challenger_metrics.requests < spec.rollout.gates.min_samples
    ):
        # A first model protects nothing yet: with too little traffic to judge, the smoke test decides.
        verdict = replace(
            verdict,
            verdict="pass",
            reasons=(
                f"first model: {challenger_metrics.requests} request(s) in the bake window (< {spec.rollout.gates.min_samples}); "
                "no champion to protect, the smoke test passed",
                *verdict.reasons,
            ),
        )
    action: dict[str, Any] = json.loads(
        json.dumps(next_rollout_action(state, verdict, spec.rollout).to_dict(), default=str)
    )
    recorded_verdict: str = verdict.verdict
    if run is not None and run.abort_requested:
        plan = rollback_plan(dict(traffic.live), state_champion, challenger, hard=True)
        outcome = (
            "rolled back to the champion"
            if champion is not None
            else "the first model is withdrawn (there is no champion to roll back to; the endpoint serves nothing)"
        )
        action = {**action, "kind": "rollback", "traffic_plan": plan, "mirror": {}, "hard": True,
                  "reasons": [f"{run.abort_reason()}: {outcome}"]}  # fmt: skip
        recorded_verdict = "aborted"  # not the canary's verdict: the step did not end on its evidence
    if champion is None:
        action["traffic_plan"] = [{k: v for k, v in p.items() if k != state_champion} for p in action["traffic_plan"]]
    step_label = "shadow" if shadow else f"traffic-{spec.rollout.steps[step_index]}"
    _record_step(
        payload,
        step_label,
        dict(traffic.live),
        dict(traffic.mirror),
        recorded_verdict,
        {"action": action["kind"], "reasons": list(action["reasons"]), "verdict": verdict.to_dict()},
    )
    return action


@bp.activity_trigger(input_name="payload")
def rollout_finish(payload: dict[str, Any]) -> dict[str, Any]:
    """On success: the new champion (registry + platform tag), ModelPromoted. On rollback: RolloutRolledBack."""
    model, run_id, version = payload["model"], payload["run_id"], str(payload["version"])
    reasons = [str(r) for r in payload.get("reasons", [])]
    if payload["outcome"] != "completed":
        _remove_challenger(payload)
        deciding = _registry().deciding_step(model, run_id)
        evidence = deciding.evidence if deciding else {}
        # An analysed step keeps the canary verdict under "verdict"; deploy and smoke steps keep their result.
        if isinstance(evidence.get("verdict"), dict):
            evidence = evidence["verdict"]
        _publisher().publish(
            [
                make_event(
                    RolloutRolledBack(
                        model=model,
                        version=version,
                        run_id=run_id,
                        step=deciding.step if deciding else "rollout",
                        reasons=reasons,
                        evidence=dict(evidence),
                    ),
                    event_id=f"{run_id}:rolled-back",
                )
            ]
        )
        return {"champion": payload.get("champion")}
    _promote(model, version, run_id, payload["challenger"])
    return {"champion": payload["challenger"]}


def _promote(model: str, version: str, run_id: str, deployment: str) -> None:
    """Make ``version`` the champion: the registry, the platform's tag, the idle deployments, ModelPromoted.

    Safe to run again after any part failed: a second run finds the registry already pointing at the version
    and takes the previous version from that record (not from itself), and the event keeps its id."""
    registry, platform = _registry(), _platform()
    current = registry.champion(model)
    if current is not None and current.version == version:
        previous = current.previous_version  # promoted by an earlier attempt
    else:
        previous = current.version if current else None
        registry.set_champion(
            Champion(
                model=model,
                version=version,
                run_id=run_id,
                deployment=deployment,
                previous_version=previous,
                etag=current.etag if current else None,
            )
        )
    platform.set_champion(model, version)
    # The champion before last has no purpose any more; the previous one stays for its grace period.
    # Tidying must not turn a promotion into a failed rollout: the housekeeping timer retries it.
    try:
        retire_idle_deployments(
            model, get_runtime().spec(model), platform, registry, datetime.now(UTC), finishing_run=run_id
        )
    except (PlatformError, StorageError, RegistryError) as exc:
        logger.warning("retiring %s's idle deployments is left to the housekeeping timer: %s", model, exc)
    _publisher().publish(
        [
            make_event(
                ModelPromoted(model=model, version=version, run_id=run_id, previous_version=previous),
                event_id=f"{run_id}:promoted",
            )
        ]
    )


@bp.activity_trigger(input_name="payload")
def rollout_abandon(payload: dict[str, Any]) -> dict[str, Any]:
    """After a rollout that failed unexpectedly: the champion back at 100, the challenger deleted, recorded.

    Works from the registry and the endpoint alone (the failed rollout's plan may never have been made).
    """
    model, version = payload["model"], str(payload["version"])
    spec = get_runtime().spec(model)
    platform, registry = _platform(), _registry()
    endpoint, challenger = spec.endpoint_name, deployment_name(model, version)
    champion = registry.champion(model)
    if champion is not None and champion.version == version:
        # This rollout promoted the version before it failed (say the platform's tag or ModelPromoted could not
        # be sent): nothing to undo, and what the promotion left undone is done now.
        _promote(model, version, payload["run_id"], champion.deployment or challenger)
        return {"champion": champion.deployment, "outcome": "completed"}
    names = {d.name for d in platform.list_deployments(endpoint)}
    champion_deployment = champion.deployment if champion and champion.deployment in names else None
    base = {**payload, "endpoint": endpoint, "champion": champion_deployment, "challenger": challenger}
    if challenger in names:
        _remove_challenger(base)
    traffic = platform.get_traffic(endpoint)
    reason = str(payload.get("reason", "the rollout failed"))
    _record_step(base, "rollback", dict(traffic.live), dict(traffic.mirror), "fail", {"reasons": [reason]})
    _publisher().publish(
        [
            make_event(
                RolloutRolledBack(
                    model=model, version=version, run_id=payload["run_id"], step="rollout", reasons=[reason]
                ),
                event_id=f"{payload['run_id']}:rolled-back",
            )
        ]
    )
    return {"champion": champion_deployment, "outcome": "rolled_back"}


# --------------------------------------------------------------------------- rollback to the previous champion


@bp.activity_trigger(input_name="payload")
def rollback_prepare(payload: dict[str, Any]) -> dict[str, Any]:
    """Bring the previous champion's deployment back: recreated if it was retired, scaled up if it was
    scaled down. Returns the plan (endpoint, the current champion's deployment, the one to restore)."""
    request = RunRequest.load(payload)
    model = request.model
    registry, platform = _registry(), _platform()
    champion = registry.champion(model)
    if champion is None or champion.previous_version is None:
        return {"error": f"{model} has no previous version to roll back to"}
    endpoint = get_runtime().spec(model).endpoint_name
    previous = champion.previous_version
    target = deployment_name(model, previous)
    found = {d.name: d for d in platform.list_deployments(endpoint)}
    # Kept (an earlier run made it) or recreated by this run, which deletes it again if it fails: read from
    # its run tag, not from whether it exists, so that a retry of this activity finds its own deployment so.
    kept = (
        target in found
        and found[target].tags.get("perennial_run") != request.run_id
        and found[target].provisioning_state != "Deleting"  # going: made again, and deleted again if it fails
    )
    try:
        if kept:
            _restore_capacity(model, endpoint, target)
            provisioning = False  # it serves already; new instances join as Azure adds them
        else:
            state = platform.create_or_update_deployment(_deployment_spec(model, previous, request.run_id))
            provisioning = state.provisioning
    except DeploymentFailedError as exc:
        error = f"the previous version {previous} could not be deployed again: {exc}"
        # A deployment made again here that failed goes again (rollback_discard), as a failed challenger does.
        return {"error": error, "endpoint": endpoint, "challenger": target, "keep_on_failure": kept}
    current = champion.deployment if champion.deployment in found else None
    if not provisioning:  # otherwise deployment_provisioned records it when it ends
        _record_step(payload, "deploy", {}, {}, "pass", {"deployment": target, "restored": kept})
    return {
        "endpoint": endpoint,
        "champion": current,
        "challenger": target,
        "version": previous,
        "from_version": champion.version,
        "keep_on_failure": kept,  # the kept deployment stays; one recreated here goes if it fails
        "provisioning": provisioning,
    }


@bp.activity_trigger(input_name="payload")
def rollback_discard(payload: dict[str, Any]) -> None:
    """Delete the previous version's deployment a failed rollback made again (it failed provisioning, or did not
    finish in time): no run would own it, and housekeeping would keep it as the previous champion's for its
    grace period. Only one carrying this run's tag: a deployment an earlier run made stays."""
    platform = _platform()
    endpoint, target = payload["endpoint"], payload["challenger"]
    found = {d.name: d for d in platform.list_deployments(endpoint)}
    if target not in found or found[target].tags.get("perennial_run") != payload["run_id"]:
        return
    traffic = platform.get_traffic(endpoint)
    if traffic.live_percent(target) or traffic.mirror_percent(target):  # never so before its smoke test: left alone
        logger.warning("rollback %s: %s takes traffic; not deleted", payload["run_id"], target)
        return
    with contextlib.suppress(NotFoundError):
        platform.delete_deployment(DeploymentRef(endpoint, target))
    logger.info("rollback %s: removed %s, which it had deployed again and which failed", payload["run_id"], target)


@bp.activity_trigger(input_name="payload")
def rollback_traffic_plan(payload: dict[str, Any]) -> dict[str, Any]:
    """The traffic maps that move the endpoint to the restored version (in steps unless ``immediate``), and the
    pause between them; the mirror is cleared first (a deployment taking live traffic cannot be mirrored to)."""
    model, run_id = payload["model"], payload["run_id"]
    platform = _platform()
    endpoint, current, target = payload["endpoint"], payload.get("champion"), payload["challenger"]
    run = _registry().require_run(model, run_id)
    immediate = bool(run.details.get("trigger", {}).get("details", {}).get("immediate", False))
    traffic = platform.get_traffic(endpoint)
    plans = rollback_plan(dict(traffic.live), target, current, hard=immediate) if current else [{target: 100}]
    if traffic.mirror:
        platform.set_traffic(TrafficUpdate(endpoint, Traffic(live=traffic.live, mirror={})))
    return {"plans": plans, "pause_minutes": get_runtime().spec(model).rollout.rollback_step_minutes}


@bp.activity_trigger(input_name="payload")
def rollback_shift(payload: dict[str, Any]) -> dict[str, Any]:
    """Apply one traffic map of a rollback (``live``), keeping the two deployments involved in the map."""
    endpoint, current, target = payload["endpoint"], payload.get("champion"), payload["challenger"]
    live = live_map(payload["live"], current, target)
    traffic = _platform().set_traffic(TrafficUpdate(endpoint, Traffic(live=live, mirror={})))
    # Each move is a step of the run, so `perennial run` shows a paced rollback while it runs (rollback-50, …).
    share = int(traffic.live.get(target, 0))
    summary = f"version {payload.get('version', '?')} takes {share} % of the traffic back"
    _record_step(payload, f"rollback-{share}", dict(traffic.live), {}, "pass", {"summary": summary})
    return {"live": dict(traffic.live)}


@bp.activity_trigger(input_name="payload")
def rollback_restore(payload: dict[str, Any]) -> dict[str, Any]:
    """After the traffic has moved (``steps`` maps): point the registry at the restored version, record, publish."""
    model, run_id = payload["model"], payload["run_id"]
    registry, platform = _registry(), _platform()
    endpoint, target = payload["endpoint"], payload["challenger"]
    version, from_version = str(payload["version"]), str(payload["from_version"])
    run = registry.require_run(model, run_id)
    # The registry first, before any platform call: traffic already serves the restored version, and if the
    # platform stays down past this activity's retries, the housekeeping timer must repair towards it, not
    # back to the version the operator rolled away from.
    champion = registry.champion(model)
    if champion is not None and champion.version != version:
        registry.set_champion(
            Champion(
                model=model,
                version=version,
                run_id=run_id,
                deployment=target,
                previous_version=champion.version,
                etag=champion.etag,
            )
        )
    traffic = platform.get_traffic(endpoint)
    if {name: share for name, share in traffic.live.items() if share} != {target: 100}:
        # Traffic moved meanwhile (another writer, a lost update): finish the move now.
        traffic = platform.set_traffic(TrafficUpdate(endpoint, Traffic(live={target: 100}, mirror={})))
    platform.set_champion(model, version)
    summary = f"rolled back from version {from_version} to version {version} ({int(payload['steps'])} traffic step(s))"
    _record_step(payload, "rollback", dict(traffic.live), dict(traffic.mirror), "pass", {"summary": summary})
    _publisher().publish(
        [
            make_event(
                RolloutRolledBack(
                    model=model,
                    version=from_version,
                    run_id=run_id,
                    step="manual rollback",
                    reasons=[run.trigger_reason],
                ),
                event_id=f"{run_id}:rolled-back",
            )
        ]
    )
    return {"summary": summary, "live": dict(traffic.live)}
