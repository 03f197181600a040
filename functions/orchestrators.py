"""Durable orchestrators: deterministic generators that only call ``context.*``.

No I/O, no clocks (``context.current_utc_datetime``), no randomness, no environment reads
(DESIGN rule 1). Every decision that needs data is an activity; the rest is a pure
function of activity results from ``shared/``. Long waits are durable timers; long
loops keep their history bounded with ``continue_as_new``.

The loop, one model at a time:

    model_coordinator (eternal, one per model: instance ``model-<name>``)
        waits for "work" (blobs landed / retrain requested), debounces blob bursts,
        claims the pending work as ONE run, then
        └─ continuous_training (instance = run id)
              validate blobs → manifest → plan candidates → ml_job × K (fan-out)
              → ml_job (evaluate challenger vs champion) → decide → register
              → [approval] → staged_rollout → record + publish
           ml_job (one per logical job): submit → poll with durable timers → resubmit
              on preemption (--resume auto) / retry on failure / cancel on timeout
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from shared.workflow import (
    POLLS_PER_GENERATION,
    BlobItem,
    CandidatePlan,
    JobOutcome,
    JobRequest,
    JobResult,
    JobStatus,
    RunRequest,
    ValidationOutcome,
    best_candidate,
    blob_identity,
    candidate_job_base,
    evaluation_job_base,
    job_deadline,
    job_instance_id,
    job_progress,
    minutes_ran,
    poll_delay,
    resubmission_refused,
    validation_chunks,
)

bp = df.Blueprint()

#: Retries for the steps that must finish once begun: traffic moves, a rollback's restore, abandoning a
#: failed rollout. Each is idempotent (absolute traffic maps, keyed records), and giving up after one
#: platform blip would leave an endpoint's traffic split: six attempts a minute apart.
MUST_FINISH = df.RetryOptions(first_retry_interval_in_milliseconds=60_000, max_number_of_attempts=6)

Orchestration = Generator[Any, Any, Any]

#: How long a new deployment may take to provision (Azure ML: typically 5-15 minutes) before the rollout gives up.
PROVISIONING_MINUTES = 60

#: Work events handled per coordinator generation before continue_as_new (bounds history in a storm).
EVENTS_PER_GENERATION = 50
#: How long a coordinator whose claim failed (past MUST_FINISH), or found another run of its model still running,
#: waits before it tries again.
CLAIM_PAUSE = timedelta(minutes=5)
#: Work kinds that run alone, in this order of precedence, and the orchestrator that runs each.
EXCLUSIVE_ORCHESTRATORS = {"rollback": "model_rollback", "rollout": "version_rollout"}


def coordinator_id(model: str) -> str:
    return f"model-{model}"


# --------------------------------------------------------------------------- model_coordinator


@bp.orchestration_trigger(context_name="context")
def model_coordinator(context: df.DurableOrchestrationContext) -> Orchestration:
    """Turns a stream of 'work' events for one model into one training run at a time.

    Work is ``{"kind": "blobs", "blobs": [...]}`` or ``{"kind": "retrain", "run_id", "trigger"}``.
    Blob arrivals are debounced: a run starts once no blob has arrived for the spec's quiet
    window, or when the max wait since the first blob has passed. A retrain request starts
    a run at once (with the blobs gathered so far).

    Events are wake-ups; the work itself is in storage. A Python orchestrator's continue_as_new
    drops the events it has not consumed (so those raised during a run are lost), and waiting for
    an event more than needed runs into SDK quirks. So a generation with nothing to do first
    asks storage (``pending_work``): requests recorded as pending runs, and landing blobs no run
    has claimed. Only then does it wait, once, for an event.
    """
    state: dict[str, Any] = context.get_input() or {}
    model: str = state["model"]
    pending = _Pending(state.get("blobs", []), state.get("requests", []))
    if state.get("first_work") is not None:
        pending.absorb(state["first_work"])
    deadline_text: str | None = state.get("deadline")

    if pending.empty:
        # Work whose event never got here, or was dropped while a run went on.
        for work in (yield context.call_activity("pending_work", {"model": model})):
            pending.absorb(work)
    if pending.empty:
        context.set_custom_status({"model": model, "stage": "idle"})
        pending.absorb((yield context.wait_for_external_event("work")))
    settings = yield context.call_activity("coordinator_settings", {"model": model})
    if deadline_text is None:
        max_wait = timedelta(seconds=float(settings["max_wait_seconds"]))
        deadline_text = (context.current_utc_datetime + max_wait).isoformat()
    quiet = timedelta(seconds=float(settings["quiet_seconds"]))

    # Debounce blob bursts (a retrain request skips the wait; so does a generation whose quiet window
    # has already passed, see below).
    handled = 0
    while not pending.requests and not state.get("ready"):
        deadline = datetime.fromisoformat(deadline_text)
        now = context.current_utc_datetime
        if now >= deadline:
            break
        starts_at = min(now + quiet, deadline)
        # What `GET /api/models` tells people: a run starts at starts_at unless another blob lands first.
        context.set_custom_status(
            {
                "model": model,
                "stage": "debouncing",
                "blobs": len(pending.blobs),
                "starts_at": starts_at.isoformat(),
                "deadline": deadline_text,
            }
        )
        timer = context.create_timer(starts_at)
        event = context.wait_for_external_event("work")
        winner = yield context.task_any([timer, event])
        if winner == timer:
            # The quiet window passed, but the 'work' wait stays open (the SDK cannot cancel it) and would
            # swallow the first event raised during the run, which continue_as_new would then not carry
            # over. A fresh generation has no open wait: it claims and runs at once.
            context.continue_as_new({"model": model, "deadline": deadline_text, "ready": True, **pending.dump()})
            return None
        timer.cancel()
        pending.absorb(event.result)
        handled += 1
        if handled >= EVENTS_PER_GENERATION:
            context.continue_as_new({"model": model, "deadline": deadline_text, **pending.dump()})
            return None

    exclusive = pending.take_exclusive()
    work = {"blobs": [], "requests": [exclusive]} if exclusive is not None else pending.dump()
    # Retried: it claims the blobs, then writes the run; a blip between the two must not leave blobs claimed by a
    # run that never starts (claim_run is idempotent: the same work claims for the same run id again).
    try:
        run = yield context.call_activity_with_retry("claim_run", MUST_FINISH, {"model": model, **work})
    except Exception as exc:  # the SDK raises a plain Exception carrying the failure's message
        # Work that cannot be claimed (storage down past the retries, an item the registry cannot store) must
        # not end the coordinator: nothing would run for this model again until some event restarted it. The
        # work is dropped from memory; what is real is in storage (pending runs, unclaimed landing blobs), and
        # the next generation's pending_work finds it after a pause, releasing first the claims of a burst whose
        # run record failed. A request that can never be claimed is tried again every pause until aborted
        # (docs/architecture.md, Known gaps). (Each failed attempt is in the host's log, as every failed activity is.)
        context.set_custom_status({"model": model, "stage": "claim_failed", "error": _first_line(str(exc))})
        yield context.create_timer(context.current_utc_datetime + CLAIM_PAUSE)
        context.continue_as_new({"model": model})
        return None
    if run is not None and run.get("busy"):
        # Another run of this model is still running: this coordinator was started again (by the next blob, or by
        # housekeeping) after the one that ran it ended. Nothing was claimed; the work waits for that run to end
        # (or for housekeeping to close it, if nothing runs it any more), then starts at once.
        if exclusive is not None:
            pending.requests.insert(0, exclusive)
        context.set_custom_status({"model": model, "stage": "waiting_for_run", "run_id": run["busy"]})
        yield context.create_timer(context.current_utc_datetime + CLAIM_PAUSE)
        context.continue_as_new({"model": model, "ready": True, **pending.dump()})
        return None
    # What waited behind a rollback goes to the next generation; work raised during the run is found in storage.
    following = pending if exclusive is not None else _Pending([], [])
    if run is not None:
        request = RunRequest.load(run)
        kind = EXCLUSIVE_ORCHESTRATORS.get(request.trigger.kind, "continuous_training")
        context.set_custom_status({"model": model, "stage": kind, "run_id": request.run_id})
        try:
            yield context.call_sub_orchestrator(kind, request.dump(), instance_id=request.run_id)
        except Exception as exc:  # the SDK raises a plain Exception carrying the failure's message
            # A run that crashed is recorded as failed (with the error), and the coordinator lives on:
            # one bad run must never stop a model from ever training again. Retried, and even then best
            # effort: the coordinator must reach continue_as_new.
            error = _first_line(str(exc))
            finished = {"model": model, "run_id": request.run_id, "status": "failed", "error": error}
            with contextlib.suppress(Exception):
                yield context.call_activity_with_retry(
                    "finish_run", MUST_FINISH, {**finished, "reasons": [f"the run failed unexpectedly: {error}"]}
                )
    context.continue_as_new({"model": model, **following.dump()})
    return None


def _first_line(text: str, limit: int = 500) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no message"
    return line[:limit]


class _Pending:
    """Work gathered by the coordinator: blobs (deduplicated by url + eTag) and retrain requests."""

    def __init__(self, blobs: list[dict[str, Any]], requests: list[dict[str, Any]]) -> None:
        self.blobs: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = list(requests)
        for blob in blobs:
            self._add_blob(blob)

    def _add_blob(self, blob: dict[str, Any]) -> None:
        self.blobs.setdefault(blob_identity(BlobItem.load(blob)), blob)

    def absorb(self, work: Any) -> None:
        if not isinstance(work, dict):
            return
        if work.get("kind") == "blobs":
            for blob in work.get("blobs", []):
                self._add_blob(blob)
        elif work.get("kind") in ("retrain", *EXCLUSIVE_ORCHESTRATORS) and not self._has(work.get("run_id")):
            self.requests.append(work)

    def _has(self, run_id: object) -> bool:
        """A request already held (its event and its pending record may both bring it)."""
        return any(r.get("run_id") == run_id for r in self.requests)

    def take_exclusive(self) -> dict[str, Any] | None:
        """A rollback (first: it restores service) or a rollout of a registered version runs alone,
        before the retrains and blobs that are waiting."""
        for kind in EXCLUSIVE_ORCHESTRATORS:
            for index, request in enumerate(self.requests):
                if request.get("kind") == kind:
                    return self.requests.pop(index)
        return None

    @property
    def empty(self) -> bool:
        return not self.blobs and not self.requests

    def dump(self) -> dict[str, Any]:
        return {"blobs": list(self.blobs.values()), "requests": self.requests}


# --------------------------------------------------------------------------- continuous_training


@bp.orchestration_trigger(context_name="context")
def continuous_training(context: df.DurableOrchestrationContext) -> Orchestration:
    """One run: validate → manifest → candidates → evaluate → decide → register → roll out."""
    request = RunRequest.load(context.get_input())
    run = {"model": request.model, "run_id": request.run_id}

    def stage(name: str, **extra: Any) -> Generator[Any, Any, bool]:
        """Record the stage; True when someone asked to abort the run (POST /api/runs/{id}/abort)."""
        context.set_custom_status({"run_id": request.run_id, "stage": name, **extra})
        answer = yield context.call_activity("record_stage", {**run, "stage": name, "details": extra})
        return bool(answer and answer.get("abort"))

    def finish(status: str, reasons: list[str], **extra: Any) -> Generator[Any, Any, dict[str, Any]]:
        # Once the outcome is decided it must be recorded: a storage blip is retried, not turned into "failed".
        yield context.call_activity_with_retry(
            "finish_run", MUST_FINISH, {**run, "status": status, "reasons": reasons, **extra}
        )
        return {"run_id": request.run_id, "status": status, "reasons": reasons, **extra}

    aborted = ["aborted on request"]

    if (yield from stage("validating", blobs=len(request.blobs))):
        return (yield from finish("aborted", aborted))
    resolved = yield context.call_activity("resolve_run_blobs", request.dump())
    blobs: list[dict[str, Any]] = resolved["blobs"]
    edges = resolved["edges"]
    checked: list[ValidationOutcome] = []
    # Every blob of a run is profiled on the same histogram edges, so the profiles merge. A first model
    # has no reference: validate one blob at a time until one is valid, and bin the rest on its edges.
    while edges is None and len(checked) < len(blobs):
        # Retried: a storage blip while reading must not fail the run (validate() raises it; only a verdict about
        # the data quarantines a blob).
        first = ValidationOutcome.load(
            (yield context.call_activity_with_retry("validate_blob", MUST_FINISH, {**run, "blob": blobs[len(checked)]}))
        )
        checked.append(first)
        if first.run_aborted:  # between two blobs, not after all of them
            return (yield from finish("aborted", aborted))
        edges = first.edges if first.ok else None
    rest = blobs[len(checked) :]
    chunk = resolved.get("validate_chunk")  # absent from answers recorded before validate_blobs existed
    if rest and chunk:
        chunks = yield context.task_all(
            [
                context.call_activity_with_retry("validate_blobs", MUST_FINISH, {**run, "blobs": part, "edges": edges})
                for part in validation_chunks(rest, chunk, resolved.get("validate_chunk_bytes"))
            ]
        )
        checked += [ValidationOutcome.load(o) for outcomes in chunks for o in outcomes]
    elif rest:  # (task_all of nothing answers None, not [])
        outcomes = yield context.task_all(
            [
                context.call_activity_with_retry("validate_blob", MUST_FINISH, {**run, "blob": blob, "edges": edges})
                for blob in rest
            ]
        )
        checked += [ValidationOutcome.load(o) for o in outcomes]
    good = [o.blob.dump() for o in checked if o.ok]
    bad = [o for o in checked if not o.ok and not o.skipped]  # a skipped blob was overwritten or deleted: not judged
    # The spec's triggers.on_validation_failure (read by resolve_run_blobs: orchestrators read no configuration).
    on_failure = request.trigger.details.get("on_validation_failure") or resolved.get("on_validation_failure")
    if not good or (bad and on_failure == "stop_run"):
        reasons = [f"{o.blob.name}: {o.summary}" for o in checked if not o.ok] or [
            f"no data to train on: landing/{request.model}/ holds no blobs (upload a batch there, e.g. with "
            f"`perennial upload FILE --model {request.model}`)"
        ]
        return (yield from finish("no_valid_data", reasons))
    # New data triggered this run: when every new blob was rejected, what is left is exactly what earlier runs
    # trained on, and training it again would only re-roll the champion. (Other triggers may retrain on it.)
    # By name: the event's url and the listing's may spell one blob differently (a Data Lake .dfs. host).
    new_names = {b.name for b in request.blobs}
    if (
        request.trigger.kind == "blob_created"
        and new_names
        and not any(o.ok and o.blob.name in new_names for o in checked)
    ):
        reasons = [f"{o.blob.name}: {o.summary}" for o in checked if not o.ok]
        reasons.append("no new valid data: every blob that triggered this run was quarantined, overwritten or "
                       "deleted; the rest of landing is what earlier runs trained on")  # fmt: skip
        return (yield from finish("no_valid_data", reasons))

    if (yield from stage("planning", good_blobs=len(good), quarantined=len(bad))):
        return (yield from finish("aborted", aborted))
    # The edges too: a blob whose kept verdict expired since is profiled again on them.
    prepared = yield context.call_activity("prepare_training", {**run, "blobs": good, "edges": edges})
    if prepared.get("no_data"):  # every valid blob changed before the manifest pinned it, or their labels conflict
        return (yield from finish("no_valid_data", list(prepared["no_data"])))
    plans = [CandidatePlan.load(p) for p in prepared["candidates"]]

    if (yield from stage("training", candidates=len(plans))):
        return (yield from finish("aborted", aborted))
    results_raw = yield context.task_all(
        [
            context.call_sub_orchestrator(
                "ml_job",
                JobRequest(
                    model=request.model,
                    run_id=request.run_id,
                    base_name=candidate_job_base(request.run_id, plan.index),
                    kind="train",
                    args={**prepared["job_args"], "params": plan.params},
                    timeout_minutes=prepared["timeout_minutes"],
                    queue_timeout_minutes=prepared.get("queue_timeout_minutes"),
                    max_retries=prepared["max_retries"],
                ).dump(),
                instance_id=job_instance_id(candidate_job_base(request.run_id, plan.index)),
            )
            for plan in plans
        ]
    )
    results = [JobResult.load(r) for r in results_raw]
    yield context.call_activity("record_candidates", {**run, "results": [r.dump() for r in results]})
    best = best_candidate(results, prepared["primary_metric"])
    # Asked again: an abort while the jobs ran cancels them, which must read as aborted, not as failed jobs.
    if (yield from stage("training", candidates=len(plans))):
        return (yield from finish("aborted", aborted))
    if best is None:
        reasons = [f"{r.base_name}: {r.outcome} ({r.error or 'no metrics'})" for r in results]
        return (yield from finish("training_failed", reasons))

    if (yield from stage("evaluating", best=best.base_name)):
        return (yield from finish("aborted", aborted))
    evaluation = yield context.call_sub_orchestrator(
        "ml_job",
        JobRequest(
            model=request.model,
            run_id=request.run_id,
            base_name=evaluation_job_base(request.run_id),
            kind="evaluate",
            args={**prepared["job_args"], "challenger": best.outputs},
            timeout_minutes=prepared["timeout_minutes"],
            queue_timeout_minutes=prepared.get("queue_timeout_minutes"),
            max_retries=prepared["max_retries"],
        ).dump(),
        instance_id=job_instance_id(evaluation_job_base(request.run_id)),
    )
    evaluated = JobResult.load(evaluation)
    if (yield from stage("evaluating", best=best.base_name)):  # an abort cancelled the evaluation job
        return (yield from finish("aborted", aborted))
    decision = yield context.call_activity(
        "decide_promotion", {**run, "best": best.dump(), "evaluation": evaluated.dump()}
    )
    if not decision["promote"]:
        return (yield from finish("not_promoted", decision["reasons"]))

    if (yield from stage("registering")):
        return (yield from finish("aborted", aborted))
    registered = yield context.call_activity(
        "register_model", {**run, "best": best.dump(), "evaluation": evaluated.dump(), "decision": decision}
    )

    # A decision made before "review" existed has none (replay): the spec's approval setting alone then applies.
    if prepared["approval_required"] or decision.get("review", False):
        if (yield from stage("awaiting_approval", version=registered["version"])):
            return (yield from finish("aborted", aborted))
        timeout = context.current_utc_datetime + timedelta(hours=float(prepared["approval_timeout_hours"]))
        timer = context.create_timer(timeout)
        approval = context.wait_for_external_event("approval")
        abort = context.wait_for_external_event("abort")
        winner = yield context.task_any([approval, timer, abort])
        if winner == timer:
            reasons = [f"no approval within {prepared['approval_timeout_hours']} h"]
            return (yield from finish("approval_timed_out", reasons))
        timer.cancel()
        if winner == abort:
            return (yield from finish("aborted", aborted))
        answer = approval.result or {}
        if not answer.get("approved", False):
            reasons = [f"rejected by {answer.get('by', 'a reviewer')}: {answer.get('comment', '')}".rstrip(": ")]
            return (yield from finish("rejected", reasons))

    if (yield from stage("rolling_out", version=registered["version"])):
        return (yield from finish("aborted", aborted))
    rollout = yield from _roll_out(context, run, str(registered["version"]))
    status = "promoted" if rollout.get("outcome") == "completed" else "rolled_back"
    reasons = list(decision["reasons"]) + list(rollout.get("reasons", []))
    return (yield from finish(status, reasons, version=registered["version"]))


def _roll_out(context: df.DurableOrchestrationContext, run: dict[str, str], version: str) -> Orchestration:
    """Run ``staged_rollout`` for ``version``; if it fails unexpectedly, abandon it to the champion."""
    try:
        rollout: dict[str, Any] = yield context.call_sub_orchestrator(
            "staged_rollout", {**run, "version": version}, instance_id=f"{run['run_id']}-rollout"
        )
    except Exception as exc:
        # Whatever broke, traffic must not stay split: the champion goes back to 100 and the challenger goes.
        reason = f"the rollout failed unexpectedly: {_first_line(str(exc))}"
        abandoned = yield context.call_activity_with_retry(
            "rollout_abandon", MUST_FINISH, {**run, "version": version, "reason": reason}
        )
        # "completed" when the version had been promoted before the failure: the run is then a promotion.
        rollout = {"outcome": abandoned.get("outcome", "rolled_back"), "reasons": [reason]}
    return rollout


@bp.orchestration_trigger(context_name="context")
def version_rollout(context: df.DurableOrchestrationContext) -> Orchestration:
    """Ship an already registered version (POST /api/models/{model}/versions/{version}/rollout)."""
    request = RunRequest.load(context.get_input())
    run = {"model": request.model, "run_id": request.run_id}
    version = str(request.trigger.details["version"])
    context.set_custom_status({"run_id": request.run_id, "stage": "rolling_out", "version": version})
    # What record_stage says of an abort is not read here (instances in flight did not read it): an abort that
    # came while this waited its turn is honoured by rollout_prepare, which then deploys nothing.
    yield context.call_activity("record_stage", {**run, "stage": "rolling_out", "details": {"version": version}})
    rollout = yield from _roll_out(context, run, version)
    status = "promoted" if rollout.get("outcome") == "completed" else "rolled_back"
    reasons = list(rollout.get("reasons", []))
    yield context.call_activity_with_retry(
        "finish_run", MUST_FINISH, {**run, "status": status, "reasons": reasons, "version": version}
    )
    return {"run_id": request.run_id, "status": status, "reasons": reasons}


# --------------------------------------------------------------------------- ml_job


@bp.orchestration_trigger(context_name="context")
def ml_job(context: df.DurableOrchestrationContext) -> Orchestration:
    """One logical Azure ML job: submit → poll → resubmit on preemption / retry on failure / cancel on timeout.

    Each generation polls at most POLLS_PER_GENERATION times, then continues as new with its
    progress, so monitoring a 72-hour job never builds a long history.
    """
    job = JobRequest.load(context.get_input())
    now = context.current_utc_datetime.isoformat()
    if job.started_at is None:
        job = job.model_copy(update={"started_at": now})
    if job.queue_timeout_minutes is not None and job.submitted_at is None:
        job = job.model_copy(update={"submitted_at": now})  # this attempt's: its wait for compute starts here

    if job.polls == 0:
        # Idempotent: the platform returns the existing job when this name was already submitted.
        yield context.call_activity("submit_job", job.dump())

    def ended(outcome: JobOutcome, error: str) -> dict[str, Any]:
        return JobResult(
            base_name=job.base_name, job_name=job.job_name, outcome=outcome, attempts=job.attempt + 1, error=error
        ).dump()

    polls = job.polls
    for _ in range(POLLS_PER_GENERATION):
        try:
            status = JobStatus.load((yield context.call_activity("job_status", job.dump())))
        except Exception as exc:  # the platform kept failing after the adapter's own retries
            # Failed, not crashed: a crash would end the run and leave this job (and its siblings) training.
            with contextlib.suppress(Exception):  # best effort: the platform's job timeout still bounds it
                yield context.call_activity("cancel_job", job.dump())
            return ended("failed", f"{job.job_name}: its status could not be read ({_first_line(str(exc))}); canceled")
        if status.phase == "completed":
            return JobResult(
                base_name=job.base_name,
                job_name=job.job_name,
                outcome="completed",
                attempts=job.attempt + 1,
                outputs=status.outputs,
                metrics=status.metrics,
            ).dump()
        if status.phase in ("preempted", "failed", "canceled", "not_found"):
            failures = [*job.failures, f"{job.job_name}: {status.phase} ({status.error or status.status})"]
            retry = status.phase == "failed" and status.retryable and job.attempt < job.max_retries
            if status.phase == "preempted" or retry:
                # Preemption is not a failure: resume from the checkpoint; a failure retries per spec, unless the
                # job said its input is bad (exit 2): the same arguments and data would fail again. The next
                # attempt waits for compute on a clock of its own; the time this one ran counts on. Not when the
                # job has run its time or been preempted too often (a request with a queue limit only).
                refused = resubmission_refused(job, status.phase, context.current_utc_datetime)
                if refused is not None:
                    return ended(refused[0], "; ".join([refused[1], *failures]))
                context.continue_as_new(
                    job.model_copy(
                        update={
                            "attempt": job.attempt + 1,
                            "resume": True,
                            "polls": 0,
                            "failures": failures,
                            "submitted_at": None,
                            "running_since": None,
                            "ran_minutes": minutes_ran(job, context.current_utc_datetime),
                            "preemptions": job.preemptions + (status.phase == "preempted"),
                        }
                    ).dump()
                )
                return None
            if status.phase == "failed" and not status.retryable:
                failures.append("not retried: the job exited 2 (bad arguments or data), which a retry would repeat")
            return ended("canceled" if status.phase == "canceled" else "failed", "; ".join(failures))
        if status.phase == "running" and job.queue_timeout_minutes is not None and job.running_since is None:
            job = job.model_copy(update={"running_since": context.current_utc_datetime.isoformat()})
        deadline, overdue = job_deadline(job)
        context.set_custom_status(job_progress(job, status, deadline))
        if context.current_utc_datetime >= deadline:
            yield context.call_activity("cancel_job", job.dump())
            return ended("timed_out", overdue)
        polls += 1
        yield context.create_timer(min(context.current_utc_datetime + poll_delay(polls), deadline))
    context.continue_as_new(job.model_copy(update={"polls": polls}).dump())
    return None


# --------------------------------------------------------------------------- staged_rollout


@bp.orchestration_trigger(context_name="context")
def staged_rollout(context: df.DurableOrchestrationContext) -> Orchestration:
    """Ship a registered version: deploy → smoke test → [shadow] → each step: set traffic → bake → analyse.

    Any failed gate rolls back to the champion (traffic maps from shared.policy, each summing to 100,
    the champion ending at 100) and deletes the challenger deployment. Input: model, run_id, version.
    """
    request: dict[str, Any] = context.get_input()
    plan = yield context.call_activity("rollout_prepare", request)
    base = {**request, "endpoint": plan["endpoint"], "champion": plan["champion"], "challenger": plan["challenger"]}

    def rolled_back(reasons: list[str]) -> Orchestration:
        # Must finish once begun: the challenger goes and the champion keeps (or gets back) all traffic.
        yield context.call_activity_with_retry(
            "rollout_finish", MUST_FINISH, {**base, "outcome": "rolled_back", "reasons": reasons}
        )
        return {"outcome": "rolled_back", "reasons": reasons}

    if plan.get("provisioning"):
        provisioned = yield from _provisioned(context, {**request, **base})
        if provisioned.get("error"):
            plan = {**plan, "error": provisioned["error"]}
    if plan.get("error"):  # the deployment failed, or the run was aborted before it was made
        return (yield from rolled_back([plan["error"]]))

    smoke = yield context.call_activity("rollout_smoke", base)
    if not smoke["ok"]:
        return (yield from rolled_back([f"smoke test failed: {smoke['reason']}"]))
    if smoke.get("abort"):  # asked to stop while the challenger deployed: it goes before it takes any traffic
        return (yield from rolled_back([smoke["abort"]]))

    steps: list[int] = plan["steps"]
    first_model = plan["champion"] is None
    # A first model has nothing to split with: it takes all traffic and is judged on the absolute gates.
    step_index = len(steps) - 1 if first_model else (-1 if plan["shadow"] else 0)
    applied = yield context.call_activity("rollout_apply", {**base, "step_index": step_index, "action": None})
    extensions = 0
    # Bake windows are wall-clock times taken by the activities (metrics are stamped by the platform's clock).
    window_start: str = applied["applied_at"]
    bake = float(plan["shadow_bake_minutes"] if step_index == -1 else plan["bake_minutes"])
    bakes = 0
    while True:
        bakes += 1  # tells watchers a new bake window started (a hold keeps the step index)
        context.set_custom_status(
            {"run_id": request["run_id"], "stage": "baking", "step_index": step_index, "bake": bakes}
        )
        timer = context.create_timer(context.current_utc_datetime + timedelta(minutes=bake))
        abort = context.wait_for_external_event("abort")
        if (yield context.task_any([timer, abort])) == abort:
            timer.cancel()  # the analysis sees the abort request and rolls back at once
        action = yield context.call_activity(
            "rollout_analyse",
            {
                **base,
                "step_index": step_index,
                "extensions_used": extensions,
                "window_start": window_start,
            },
        )
        kind = action["kind"]
        if kind == "rollback" and plan["champion"] is not None:
            moves = [
                {**base, "step_index": step_index, "action": action, "plan_index": index}
                for index in range(len(action["traffic_plan"]))
            ]
            pause = float(plan.get("rollback_step_minutes", 0.0))
            yield from _paced_moves(context, request["run_id"], pause, "rollout_apply", moves)
        else:
            applied = yield context.call_activity("rollout_apply", {**base, "step_index": step_index, "action": action})
        if kind in ("complete", "rollback"):
            outcome = "completed" if kind == "complete" else "rolled_back"
            reasons = list(action["reasons"])
            # Must finish once begun: a blip after the last gate passed must not throw the new champion away.
            yield context.call_activity_with_retry(
                "rollout_finish", MUST_FINISH, {**base, "outcome": outcome, "reasons": reasons}
            )
            return {"outcome": outcome, "reasons": reasons}
        if kind == "advance":
            step_index, extensions = int(action["step_index"]), 0
            window_start = applied["applied_at"]
        else:  # hold: the window grows, so an extension adds data instead of starting over
            extensions = int(action["extensions_used"])
        bake = float(action["bake_minutes"])


def _provisioned(context: df.DurableOrchestrationContext, payload: dict[str, Any]) -> Orchestration:
    """Wait on durable timers (15 s, 30 s, … up to 5 min apart) while the platform provisions
    ``payload["challenger"]``: an activity that waited instead would outlive the host's function timeout.
    Returns deployment_provisioned's last answer, with an ``error`` when it failed or took too long."""
    deadline = context.current_utc_datetime + timedelta(minutes=PROVISIONING_MINUTES)
    polls = 0
    while True:
        if context.current_utc_datetime >= deadline:
            late = f"deployment {payload['challenger']} was still provisioning after {PROVISIONING_MINUTES} minutes"
            # The challenger is removed next; the usual causes are on the workspace's side.
            return {"error": f"{late} (check the instance type's quota and the deployment's events in the studio)"}
        context.set_custom_status(
            {"run_id": payload["run_id"], "stage": "provisioning", "deployment": payload["challenger"]}
        )
        yield context.create_timer(min(context.current_utc_datetime + poll_delay(polls), deadline))
        polls += 1
        answer: dict[str, Any] = yield context.call_activity_with_retry("deployment_provisioned", MUST_FINISH, payload)
        if not answer.get("provisioning"):
            return answer


def _paced_moves(
    context: df.DurableOrchestrationContext,
    run_id: str,
    pause: float,
    activity: str,
    payloads: list[dict[str, Any]],
) -> Orchestration:
    """Call ``activity`` once per traffic move of a rollback, a durable timer of ``pause`` minutes between two
    moves, so a stepped (soft) rollback hands the champion its load in stages (a hard one has a single move).
    The custom status says "stepping_back" while a pause runs."""
    for index, payload in enumerate(payloads):
        if index and pause > 0:
            status = {"stage": "stepping_back", "move": index + 1, "moves": len(payloads), "pause_minutes": pause}
            context.set_custom_status({"run_id": run_id, **status})
            yield context.create_timer(context.current_utc_datetime + timedelta(minutes=pause))
        yield context.call_activity_with_retry(activity, MUST_FINISH, payload)


# --------------------------------------------------------------------------- model_rollback


@bp.orchestration_trigger(context_name="context")
def model_rollback(context: df.DurableOrchestrationContext) -> Orchestration:
    """Restore the previous champion (POST /api/models/{model}/rollback): its deployment is brought back
    (recreated if it was retired, scaled back up if it was scaled down) and smoke-tested, then traffic
    moves to it in steps (or at once when asked), and the registry points at it again."""
    request = RunRequest.load(context.get_input())
    run = {"model": request.model, "run_id": request.run_id}
    context.set_custom_status({"run_id": request.run_id, "stage": "rolling_back"})
    yield context.call_activity("record_stage", {**run, "stage": "rolling_back", "details": {}})
    plan = yield context.call_activity("rollback_prepare", request.dump())
    if plan.get("provisioning"):  # the retired previous version is being deployed again
        provisioned = yield from _provisioned(context, {**run, **plan})
        if provisioned.get("error"):
            plan = {
                **plan,
                "error": f"the previous version {plan['version']} could not be deployed again: {provisioned['error']}",
            }
    if plan.get("error"):
        if plan.get("challenger") and not plan.get("keep_on_failure", True):
            # Made again by this run and failed: no run would own it (a kept one stays for its grace period).
            yield context.call_activity_with_retry("rollback_discard", MUST_FINISH, {**run, **plan})
        reasons = [plan["error"]]
        yield context.call_activity_with_retry(
            "finish_run", MUST_FINISH, {**run, "status": "failed", "reasons": reasons}
        )
        return {"run_id": request.run_id, "status": "failed", "reasons": reasons}
    smoke = yield context.call_activity("rollout_smoke", {**run, **plan})
    if not smoke["ok"]:
        reasons = [f"the previous version {plan['version']} failed its smoke test: {smoke['reason']}; nothing changed"]
        yield context.call_activity_with_retry(
            "finish_run", MUST_FINISH, {**run, "status": "failed", "reasons": reasons}
        )
        return {"run_id": request.run_id, "status": "failed", "reasons": reasons}
    moves = yield context.call_activity("rollback_traffic_plan", {**run, **plan})
    maps: list[dict[str, int]] = moves["plans"]
    shifts = [{**run, **plan, "live": live} for live in maps]
    yield from _paced_moves(context, request.run_id, float(moves["pause_minutes"]), "rollback_shift", shifts)
    restored = yield context.call_activity_with_retry(
        "rollback_restore", MUST_FINISH, {**run, **plan, "steps": len(maps)}
    )
    reasons = [restored["summary"]]
    yield context.call_activity_with_retry(
        "finish_run", MUST_FINISH, {**run, "status": "rolled_back", "reasons": reasons, "version": plan["version"]}
    )
    return {"run_id": request.run_id, "status": "rolled_back", "reasons": reasons}
