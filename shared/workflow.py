"""The messages orchestrators and activities exchange, and the pure rules that name things.

Durable Functions passes activity inputs and outputs as JSON. Every message here is a
frozen pydantic model: orchestrators send ``msg.dump()`` (plain JSON) and activities parse
with ``Model.load(...)``, so a field can be added without breaking running instances
(unknown fields are ignored on load, new fields have defaults).

Names of side effects are deterministic functions of their inputs (DESIGN rule 2): a run id
from its trigger, a job name from run + candidate + attempt, a deployment name from the model
version. An activity that runs twice finds what its first run created instead of creating it
again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from shared.blobpaths import BlobNameError, quoted_etag, split_blob_url


class Message(BaseModel):
    """Base of every orchestrator <-> activity message: frozen, tolerant of fields added later."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def load(cls, value: Any) -> Self:
        return cls.model_validate(value)


# --------------------------------------------------------------------------- triggers and runs


class BlobItem(Message):
    """One landed blob, identified by (url, etag) as Event Grid reports it."""

    url: str
    container: str
    name: str
    etag: str
    size: int = 0
    # What validation learnt of this version: its hash (the manifest then needs no read) and where its verdict and
    # profile are kept in ``verdicts`` (shared.verdicts). None in what an older version of this app recorded.
    sha256: str | None = None
    verdict: str | None = None


class TriggerInfo(Message):
    """Why a run exists: the normalised trigger, kept in the run's lineage."""

    kind: str
    reason: str
    source_event_id: str
    details: dict[str, Any] = Field(default_factory=dict)


class RunRequest(Message):
    """Input of ``continuous_training``: which model, why, and which blobs (empty = the model's latest data)."""

    model: str
    run_id: str
    trigger: TriggerInfo
    blobs: list[BlobItem] = Field(default_factory=list)


class ValidationOutcome(Message):
    blob: BlobItem
    ok: bool
    summary: str
    errors: int = 0
    warnings: int = 0
    rows: int = 0
    quarantined_to: str | None = None
    #: Histogram edges of a valid blob's profile; a first run profiles its other blobs on them so they merge.
    edges: dict[str, list[float]] | None = None
    #: Not judged: the version the run listed was overwritten or deleted before it was read (a newer version has
    #: its own event and run). Neither good nor bad: it does not stop a run under ``stop_run``.
    skipped: bool = False
    #: The run was asked to abort (``validate_blob`` only): a first model's blobs are validated one at a time, and
    #: the run stops between two of them instead of after all. (Absent from outcomes recorded before: False.)
    run_aborted: bool = False


class CandidatePlan(Message):
    index: int
    params: dict[str, Any]
    why: str


JobKind = Literal["train", "evaluate"]
JobOutcome = Literal["completed", "failed", "canceled", "timed_out"]


class JobRequest(Message):
    """Input of the ``ml_job`` sub-orchestration: one logical job, retried and resumed as needed."""

    model: str
    run_id: str
    base_name: str
    kind: JobKind
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_minutes: float = 240
    #: Minutes each attempt may wait for compute before it starts running. None in what an older version of this
    #: app recorded: such a job keeps one deadline from its first submission, time queued included (``job_deadline``).
    queue_timeout_minutes: float | None = None
    max_retries: int = 2
    # progress carried across continue_as_new generations
    attempt: int = 0
    resume: bool = False
    polls: int = 0
    started_at: str | None = None
    failures: list[str] = Field(default_factory=list)
    #: When this attempt was submitted and when a poll first saw it running; minutes earlier attempts ran.
    submitted_at: str | None = None
    running_since: str | None = None
    ran_minutes: float = 0.0
    #: Times an attempt was preempted and resumed (a request with a queue limit only: ``resubmission_refused``).
    preemptions: int = 0

    @property
    def job_name(self) -> str:
        return job_name(self.base_name, self.attempt)


class JobResult(Message):
    base_name: str
    job_name: str
    outcome: JobOutcome
    attempts: int
    outputs: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class JobStatus(Message):
    """What ``job_status`` reports: the platform's phase, normalised."""

    name: str
    phase: Literal["queued", "running", "completed", "failed", "canceled", "preempted", "not_found"]
    status: str
    outputs: str | None = None
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    retryable: bool = True  # False: the job failed saying its input is bad; another attempt would fail alike


# --------------------------------------------------------------------------- deterministic names


_NAME_SAFE = re.compile(r"[^a-z0-9-]+")


def _digest(parts: Iterable[str], length: int = 12) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode("utf-8"))
        hasher.update(b"\x00")
    return hasher.hexdigest()[:length]


def blobs_dedupe_key(blobs: Iterable[BlobItem]) -> str:
    """The trigger identity of a set of blobs (order-free): the same set always makes the same run id."""
    return "blobs|" + _digest(sorted(blob_identity(b) for b in blobs), length=32)


def blob_identity(blob: BlobItem) -> str:
    """A blob is identified by (url, eTag): the same bytes delivered twice are one blob (DESIGN rule 3)."""
    return f"{blob.url}|{blob.etag}"


def job_name(base_name: str, attempt: int) -> str:
    """Azure ML job names are unique per workspace: letters, digits, '-' and '_', at most 255 characters."""
    return f"{base_name}-a{attempt}"


def candidate_id(index: int) -> str:
    """A run's candidate ``index`` in the registry: c0, c1, …"""
    return f"c{index}"


def candidate_job_base(run_id: str, index: int) -> str:
    """The base name of a candidate's training jobs: ``<run id>-c<index>``."""
    return job_base_of_candidate(run_id, candidate_id(index))


def job_base_of_candidate(run_id: str, candidate: str) -> str:
    """The base name of the training jobs of the run's candidate ``candidate`` (a registry candidate id, ``c1``)."""
    return f"{run_id}-{candidate}"


def evaluation_job_base(run_id: str) -> str:
    """The base name of a run's evaluation jobs: ``<run id>-eval``."""
    return f"{run_id}-eval"


def job_instance_id(base_name: str) -> str:
    """The ``ml_job`` orchestration that runs the jobs of ``base_name`` (one per logical job, all its attempts)."""
    return f"{base_name}-job"


def job_progress(job: JobRequest, status: JobStatus, deadline: datetime) -> dict[str, Any]:
    """What ``ml_job`` shows of a job as its custom status (``GET /api/runs/{id}`` → ``jobs``): the platform's
    status, whether it waits for compute or runs, since when, and when it is cancelled unless it ends first."""
    return {
        "job": job.job_name,
        "status": status.status,
        "phase": status.phase,
        "attempt": job.attempt,
        "waiting_since": job.submitted_at if job.running_since is None else None,
        "running_since": job.running_since,
        "ran_minutes_before": job.ran_minutes,
        "preemptions": job.preemptions,
        "deadline": deadline.isoformat(),
    }


def candidate_of_job(base_name: str) -> str:
    """The candidate id a training job's base name ends with (``fraud-3f2a…-c1`` → ``c1``)."""
    return base_name.rsplit("-", 1)[-1]


def deployment_name(model: str, version: str | int) -> str:
    """Azure ML deployment names: 3-32 chars, a letter first, letters/digits/'-', not ending in '-'."""
    stem = _NAME_SAFE.sub("-", model.lower()).strip("-")
    suffix = f"-v{version}"
    return (stem[: 32 - len(suffix)].rstrip("-") or "m") + suffix


# --------------------------------------------------------------------------- polling


def validation_chunks(blobs: Sequence[Mapping[str, Any]], count: int, max_bytes: int | None) -> list[list[Any]]:
    """``blobs`` in order, cut into chunks of at most ``count`` blobs and (when given) ``max_bytes`` bytes together,
    so one ``validate_blobs`` activity reads no more than it can within the host's function timeout. A blob larger
    than ``max_bytes`` has a chunk of its own."""
    chunks: list[list[Any]] = []
    size = 0
    for blob in blobs:
        blob_size = int(blob.get("size") or 0)
        if not chunks or len(chunks[-1]) >= count or (max_bytes is not None and size + blob_size > max_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append(blob)
        size += blob_size
    return chunks


def poll_delay(polls: int, first: float = 15.0, cap: float = 300.0) -> timedelta:
    """Back-off between job polls: 15 s, 30 s, 60 s, … capped at 5 minutes."""
    return timedelta(seconds=min(cap, first * (2 ** min(polls, 16))))


#: Polls per ml_job generation before continue_as_new, so a 72-hour job never builds a long history.
POLLS_PER_GENERATION = 20

#: Preemptions a job with a queue limit survives (each resumed from its checkpoint); the next one ends it
#: ``failed``. Each resume may wait ``queue_timeout_minutes`` for compute again, so this cap is what bounds the
#: job's life (``job_deadline``). Ten lets a long job on low-priority nodes finish through the odd eviction
#: (each resume keeps its checkpointed progress, so a low cap would throw finished work away), while a cluster
#: that evicts a job more often than that, or before it ever runs, is one it will not finish on.
MAX_PREEMPTIONS = 10


def job_deadline(job: JobRequest) -> tuple[datetime, str]:
    """When ``ml_job`` cancels ``job`` (as things stand at this poll), and the reason the run then records.

    Time queued and time running have limits of their own, as Azure ML's ``limits.timeout`` counts only running:
    each attempt may wait ``queue_timeout_minutes`` for compute after its submission, and the attempts together
    (a preempted job resumes, a failed one is retried) may run ``timeout_minutes``, counted from the poll that
    first saw each running. A request recorded before ``queue_timeout_minutes`` existed keeps the deadline it was
    started with (one, from the first submission, time queued included), so an instance in flight replays alike.
    Needs ``started_at`` (and ``submitted_at`` for a request with a queue limit): ``ml_job`` sets them.

    With a queue limit, a job is resubmitted only while it has running minutes left and, after a preemption,
    only ``MAX_PREEMPTIONS`` times (``resubmission_refused``); a failure is retried ``max_retries`` times. So at
    most ``1 + max_retries + MAX_PREEMPTIONS`` attempts each wait at most ``queue_timeout_minutes``, and together
    they run at most ``timeout_minutes``: the job ends within
    ``(1 + max_retries + MAX_PREEMPTIONS) * queue_timeout_minutes + timeout_minutes`` minutes of its first
    submission (defaults: 13 * 720 + 240 = 9,600 minutes, 160 hours), plus the time its activities take."""
    if job.started_at is None:
        raise ValueError(f"job {job.job_name} has no started_at: ml_job sets it before its first poll")
    if job.queue_timeout_minutes is None:
        return (
            datetime.fromisoformat(job.started_at) + timedelta(minutes=job.timeout_minutes),
            f"{job.job_name} did not finish within {job.timeout_minutes:g} minutes; canceled",
        )
    if job.running_since is None:
        if job.submitted_at is None:
            raise ValueError(f"job {job.job_name} has no submitted_at: ml_job sets it when it submits")
        return (
            datetime.fromisoformat(job.submitted_at) + timedelta(minutes=job.queue_timeout_minutes),
            f"{job.job_name} waited {job.queue_timeout_minutes:g} minutes for compute without starting; canceled "
            "(training.queue_timeout_minutes: add nodes or quota to the cluster, or allow a longer wait)",
        )
    left = max(0.0, job.timeout_minutes - job.ran_minutes)
    return (
        datetime.fromisoformat(job.running_since) + timedelta(minutes=left),
        f"{job.job_name} ran {job.timeout_minutes:g} minutes without finishing; canceled (training.timeout_minutes)",
    )


def minutes_ran(job: JobRequest, now: datetime) -> float:
    """Minutes ``job`` has run so far, earlier attempts included (as ``job_deadline`` counts them)."""
    this_attempt = (now - datetime.fromisoformat(job.running_since)).total_seconds() / 60 if job.running_since else 0.0
    return job.ran_minutes + max(0.0, this_attempt)


def resubmission_refused(job: JobRequest, phase: str, now: datetime) -> tuple[JobOutcome, str] | None:
    """Why ``ml_job`` must not resubmit ``job``, whose attempt a poll at ``now`` saw ``phase`` (``preempted``, or
    ``failed`` and retryable within ``max_retries``), as (outcome, reason); None when it may.

    A job that has run its ``timeout_minutes`` (this attempt included) ends ``timed_out`` rather than wait for
    compute again only to be cancelled at its first running poll. A preemption beyond ``MAX_PREEMPTIONS`` ends it
    ``failed``; every preemption counts, one seen before any poll saw the attempt running too, or a job evicted
    while starting up would be resubmitted for ever. A request without ``queue_timeout_minutes`` (recorded by an
    older version) keeps its one deadline from its first submission, which bounds its attempts: None."""
    if job.queue_timeout_minutes is None:
        return None
    ran = minutes_ran(job, now)
    if ran >= job.timeout_minutes:
        return (
            "timed_out",
            f"{job.job_name} was {phase} when the job had run {ran:.0f} of its {job.timeout_minutes:g} minutes; "
            "not resubmitted (training.timeout_minutes: allow longer, train fewer epochs or on a larger instance)",
        )
    if phase == "preempted" and job.preemptions >= MAX_PREEMPTIONS:
        return (
            "failed",
            f"{job.job_name}: the job was preempted {job.preemptions + 1} times (resumed {MAX_PREEMPTIONS}, the "
            "limit); not resubmitted: train on dedicated (not low-priority) nodes, or on a cluster with fewer "
            "evictions",
        )
    return None


def best_candidate(results: Iterable[JobResult], metric: str) -> JobResult | None:
    """The completed candidate with the highest validation ``metric`` (ties: the lowest job name)."""
    scored = [r for r in results if r.outcome == "completed" and isinstance(r.metrics.get(metric), int | float)]
    if not scored:
        return None
    return sorted(scored, key=lambda r: (-float(r.metrics[metric]), r.job_name))[0]


def merge_params(fixed: Mapping[str, Any], varied: Mapping[str, Any]) -> dict[str, Any]:
    return {**fixed, **varied}


# --------------------------------------------------------------------------- work the coordinator may have missed


def usable_request(item: object, run_id: str) -> dict[str, Any] | None:
    """A pending run's stored work item, if claim_run can take it (a malformed one would fail every claim
    it joined, so it is left out)."""
    if not isinstance(item, dict) or item.get("run_id") != run_id or not isinstance(item.get("kind"), str):
        return None
    try:
        TriggerInfo.load(item.get("trigger"))
    except (ValueError, TypeError):
        return None
    return dict(item)


def claims_left_out(
    claimed: Iterable[tuple[str, str]], listed: Iterable[tuple[str, str]], container: str
) -> list[tuple[str, str]]:
    """The versions (name, eTag) in ``container`` of a run's claims (url, eTag) that its listing (name, eTag) lacks:
    with a training window, its trigger's batch may have aged out while the request waited its turn, and a claimed
    batch starts no other run, so the run must still train it. Claims elsewhere, or with unreadable urls, are
    skipped."""
    have = {(name, quoted_etag(etag)) for name, etag in listed}
    missing: list[tuple[str, str]] = []
    for url, etag in claimed:
        try:
            in_container, name = split_blob_url(url)
        except BlobNameError:
            continue
        if in_container == container and (name, quoted_etag(etag)) not in have:
            missing.append((name, quoted_etag(etag)))
    return missing


def unclaimed_blobs(listing: Iterable[BlobItem], seen_etags: set[str]) -> list[BlobItem]:
    """Landing blobs whose version no run has claimed. Not an empty one: a file still being written (ADLS
    Gen2 lists it empty until FlushWithClose, whose event then announces it), or empty, trains nothing."""
    return [b for b in listing if b.etag not in seen_etags and b.size > 0]
