"""The run and lineage registry (Azure Table storage): what ran, why, on which data, and what shipped.

Two tables, both partitioned by model name so that everything about one model can change
together in one atomic transaction:

- ``PerennialRuns``   ``run:<run>``, ``recent:<inverted creation time>:<run>`` (newest-first index of the
  runs, written with the run in one transaction), ``cand:<run>:<candidate>``, ``step:<run>:<nnnn>``
  (rollout steps), ``seen:<hash of url+eTag>`` (blob dedupe: which run took which blob version) and
  ``claimed:<run>:<hash>`` (the same claim, written with it, so a run's blobs are one range read)
- ``PerennialModels`` ``version:<version>`` (a registered model's lineage) and ``champion``

Records go in and out as dataclasses. Each record read carries its ``etag``; saving it
back with that ETag fails with :class:`ConcurrencyError` if someone changed it meanwhile
(never a silent lost update); :meth:`Registry.update_run` is the read-change-write retry
helper. Values Azure cannot hold in one entity spill to the ``payloads`` container.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from azure.data.tables import TableServiceClient

from shared.settings import StorageSettings
from shared.storage import BlobStore, blob_service_client
from shared.tables import (
    AlreadyExistsError,
    ConcurrencyError,
    Operation,
    Table,
    TableLimitError,
    safe_key,
    table_service_client,
)

logger = logging.getLogger("perennial.registry")

RUNS_TABLE = "PerennialRuns"
MODELS_TABLE = "PerennialModels"
#: Every table Perennial uses; infra/ creates them, ``Registry.ensure_tables`` does locally.
TABLES: tuple[str, ...] = (RUNS_TABLE, MODELS_TABLE)

__all__ = [
    "MODELS_TABLE",
    "RUNS_TABLE",
    "TABLES",
    "AlreadyExistsError",
    "Candidate",
    "Champion",
    "ClaimResult",
    "ConcurrencyError",
    "Lineage",
    "ModelVersion",
    "Registry",
    "RegistryError",
    "RolloutStep",
    "Run",
    "SeenBlob",
    "TableLimitError",
    "run_id_for",
]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_JSON = "_json"


#: Run statuses of a run still in progress (a second run of the model is refused meanwhile).
ACTIVE_RUN_STATUSES = frozenset({"pending", "running"})


def never_ran(run: Run) -> bool:
    """A request that ended without running: merged into another run, suppressed when its turn came, or aborted
    while queued. It neither blocks a monitor's alert nor starts an alert's cool-down (the schedule still counts
    it, as it counts every run: docs/policy.md)."""
    return run.status in ("merged", "suppressed") or run.details.get("never_started") is True


def bad_upload(run: Run) -> bool:
    """A run of landed data that ended without any valid new batch (all quarantined, overwritten or deleted): it
    trained nothing and says nothing of the model, so it starts no cool-down (an accuracy alert or the schedule's
    age check after it must not wait a day)."""
    return run.trigger_kind == "blob_created" and run.status == "no_valid_data"


def holds_back_alerts(run: Run) -> bool:
    """Whether ``run`` counts for a monitor's alert (in progress, or starting its cool-down): not a request that
    never ran, nor a bad upload."""
    return not never_ran(run) and not bad_upload(run)


# The newest-first run index: ``recent:<MICROS_CEILING - µs since the epoch, 16 digits>:<run id>``.
_RECENT = "recent:"
_MICROS_CEILING = 10**16 - 1  # the year 2286
_ONE_MICROSECOND = timedelta(microseconds=1)
# The row that says a model's partition has had its older runs indexed (see Registry._ensure_run_index).
_RECENT_INDEXED = "index:recent"
_CLAIMED = "claimed:"
#: Runs created since then have a ``claimed:<run>:`` row beside every claim; an older run's claims are found among
#: all the model's claims (a partition scan the service filters by run id).
CLAIMS_INDEXED_SINCE = datetime(2026, 12, 1, tzinfo=UTC)
# Point reads of one page of runs run side by side (Azure SDK clients are thread-safe).
_PARALLEL_READS = 8


def _recent_key(run_id: str, created_at: datetime) -> str:
    """The run's index key: newest first in RowKey order, ties by run id."""
    when = created_at if created_at.tzinfo is not None else created_at.replace(tzinfo=UTC)
    micros = (when - datetime(1970, 1, 1, tzinfo=UTC)) // _ONE_MICROSECOND
    return f"{_RECENT}{_MICROS_CEILING - max(0, min(micros, _MICROS_CEILING)):016d}:{run_id}"


class RegistryError(LookupError):
    """A record the caller needs is missing or an id is malformed; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})")


def _now() -> datetime:
    return datetime.now(UTC)


def check_id(value: str, what: str) -> str:
    """``value`` if it is a safe record id (it becomes table keys and local folder names), else RegistryError."""
    if not isinstance(value, str) or not _ID.match(value):
        raise RegistryError(f"{what} {value!r} is not a valid id", "use 1-200 letters, digits, '.', '_' or '-'")
    return value


def run_id_for(model: str, dedupe_key: str) -> str:
    """The deterministic run id of a trigger: the same trigger (redelivered) always maps to the same run."""
    return f"{model}-{hashlib.sha256(f'{model}|{dedupe_key}'.encode()).hexdigest()[:16]}"


# --------------------------------------------------------------------------- records


@dataclass
class Run:
    """One retraining attempt of one model, from trigger to decision."""

    model: str
    run_id: str
    trigger_kind: str
    trigger_reason: str
    trigger_event_id: str
    status: str = "pending"  # pending | running | promoted | not_promoted | failed | rolled_back | aborted | merged …
    stage: str = "created"  # created | validating | training | evaluating | registering | rolling_out | done
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    instance_id: str | None = None
    manifest_url: str | None = None
    candidate_ids: list[str] = field(default_factory=list)
    decision: str | None = None  # promote | reject
    decision_reasons: list[str] = field(default_factory=list)
    registered_version: str | None = None
    error: str | None = None
    abort_requested: bool = False  # set by POST /api/runs/{id}/abort; the run's activities act on it
    details: dict[str, Any] = field(default_factory=dict)  # stage details: drift summary, validation counts, …
    etag: str | None = field(default=None, compare=False)

    def request_abort(self, by: str, reason: str | None, at: datetime) -> Run:
        """This run with an abort requested. The first request's ``by`` and ``reason`` are kept in
        ``details["abort"]``: that is the one the run acts on, and a repeat must not rewrite who stopped it."""
        if "abort" in self.details:
            return replace(self, abort_requested=True)
        request = {"by": by, "reason": reason, "requested_at": at.isoformat()}
        return replace(self, abort_requested=True, details={**self.details, "abort": request})

    def abort_reason(self) -> str:
        """Why the run stopped on request, naming who asked and why (``aborted on request`` when unrecorded)."""
        request = self.details.get("abort")
        if not isinstance(request, dict):
            return "aborted on request"
        said = f"aborted on request by {request.get('by') or 'api'}"
        return f"{said} ({request['reason']})" if request.get("reason") else said


@dataclass
class Candidate:
    """One trained challenger of a run."""

    model: str
    run_id: str
    candidate_id: str
    params: dict[str, Any] = field(default_factory=dict)
    rationale: str = ""  # why these params were chosen
    job_name: str | None = None
    status: str = "planned"  # planned | submitted | running | completed | failed | cancelled
    metrics: dict[str, float] = field(default_factory=dict)
    #: Why its job did not complete (failed, canceled, timed out): each attempt's error, the job's last log lines.
    error: str | None = None
    updated_at: datetime = field(default_factory=_now)
    etag: str | None = field(default=None, compare=False)


@dataclass
class ModelVersion:
    """A registered model version with its full lineage."""

    model: str
    version: str
    run_id: str
    candidate_id: str
    trigger_kind: str
    trigger_reason: str
    trigger_event_id: str
    manifest_url: str
    #: The manifest's sha256 as stored; the manifest pins each blob (url, eTag, size, sha256). The record stays one
    #: row however many blobs trained the version: every schedule tick and run reads it.
    manifest_sha256: str = ""
    data_files: int = 0
    data_bytes: int = 0
    #: blob url -> sha256, recorded only by versions registered before 2026-11-30 (their manifest_sha256 is "").
    data_hashes: dict[str, str] = field(default_factory=dict)
    code_version: str = ""
    environment: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    registered_at: datetime = field(default_factory=_now)
    etag: str | None = field(default=None, compare=False)


@dataclass
class RolloutStep:
    """One step of a staged rollout and the evidence behind its verdict."""

    model: str
    run_id: str
    index: int
    step: str  # deploy | smoke | shadow | traffic-10 | … | rollback
    traffic: dict[str, int] = field(default_factory=dict)
    mirror_traffic: dict[str, int] = field(default_factory=dict)
    verdict: str = "pending"  # pending | pass | fail | inconclusive | aborted
    evidence: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=_now)
    etag: str | None = field(default=None, compare=False)


def pending_run(
    model: str, run_id: str, kind: str, reason: str, event_id: str, work: dict[str, Any] | None = None
) -> Run:
    """A request accepted but not yet claimed by the model's coordinator, with the work item it was sent
    (``details["work"]``): the coordinator also takes requests still pending from the registry, since their
    event may have been lost."""
    return Run(
        model=model,
        run_id=run_id,
        trigger_kind=kind,
        trigger_reason=reason,
        trigger_event_id=event_id,
        status="pending",
        stage="queued",
        instance_id=run_id,
        details={"work": work} if work is not None else {},
    )


@dataclass
class SeenBlob:
    """A blob version (url + eTag) and the run that took it: the same batch never trains twice."""

    model: str
    url: str
    blob_etag: str
    run_id: str
    size: int = 0
    seen_at: datetime = field(default_factory=_now)
    etag: str | None = field(default=None, compare=False)


@dataclass
class Champion:
    """The version serving a model now."""

    model: str
    version: str
    run_id: str
    deployment: str | None = None
    since: datetime = field(default_factory=_now)
    previous_version: str | None = None
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ClaimResult:
    claimed: list[SeenBlob]
    already_seen: list[SeenBlob]


@dataclass(frozen=True)
class Lineage:
    """Everything recorded about one run: the answer to "where did this model come from?"."""

    run: Run
    candidates: list[Candidate]
    rollout: list[RolloutStep]
    blobs: list[SeenBlob]
    version: ModelVersion | None


# --------------------------------------------------------------------------- entity codec

R = TypeVar("R", Run, Candidate, ModelVersion, RolloutStep, SeenBlob, Champion)


def _encode(record: Any, pk: str, rk: str) -> dict[str, Any]:
    """Scalars stay native properties; lists and dicts become ``<name>_json`` strings (spillable)."""
    entity: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk}
    for f in fields(record):
        if f.name == "etag":
            continue
        value = getattr(record, f.name)
        if isinstance(value, dict | list | tuple):
            entity[f"{f.name}{_JSON}"] = json.dumps(value, sort_keys=True, default=str)
        else:
            entity[f.name] = value
    return entity


def _decode(cls: type[R], entity: Mapping[str, Any]) -> R:
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "etag":
            values["etag"] = entity.get("etag")
        elif f"{f.name}{_JSON}" in entity:
            values[f.name] = json.loads(entity[f"{f.name}{_JSON}"])
        elif f.name in entity and entity[f.name] is not None:
            value = entity[f.name]
            # The SDK returns a datetime subclass; hand back a plain one so records compare cleanly.
            values[f.name] = (
                datetime.combine(value.date(), value.time(), tzinfo=UTC) if isinstance(value, datetime) else value
            )
    return cls(**values)


def is_whole_number(text: str, max_digits: int | None = None) -> bool:
    """ASCII digits only (``str.isdigit`` also accepts '²' and '١', which ``int`` then refuses or misreads)."""
    return text.isascii() and text.isdigit() and (max_digits is None or len(text) <= max_digits)


def _version_key(version: str) -> str:
    """Numeric versions sort numerically (``version:0000000010`` after ``…09``); others as text."""
    numeric = is_whole_number(version)
    return f"version:{int(version):010d}" if numeric else f"version:{safe_key(version, 60)}"


# --------------------------------------------------------------------------- the registry


def _claim_hash(url: str, blob_etag: str) -> str:
    return hashlib.sha256(f"{url}|{blob_etag}".encode()).hexdigest()


class Registry:
    """Perennial's records in Table storage, with ETag concurrency and Azure's limits enforced."""

    def __init__(self, service: TableServiceClient, payloads: BlobStore | None = None) -> None:
        spill = payloads.put_payload if payloads is not None else None
        load = payloads.get_payload if payloads is not None else None
        self.runs_table = Table(service.get_table_client(RUNS_TABLE), spill, load)
        self.models_table = Table(service.get_table_client(MODELS_TABLE), spill, load)
        self._indexed_models: set[str] = set()  # partitions known to have every run in the newest-first index

    @classmethod
    def from_settings(cls, storage: StorageSettings, payloads: BlobStore | None = None) -> Registry:
        """Tables from ``storage``; large values spill to that account's payloads container by default."""
        if payloads is None:
            payloads = BlobStore(blob_service_client(storage), known_models=())
        return cls(table_service_client(storage), payloads)

    def ensure_tables(self) -> None:
        self.runs_table.ensure()
        self.models_table.ensure()

    # ----------------------------------------------------------------- runs

    def create_run(self, run: Run) -> Run:
        """Insert ``run`` and its index row; if a run with this id exists (a redelivered trigger) return that one
        instead."""
        check_id(run.run_id, "run id")
        index = {"PartitionKey": run.model, "RowKey": _recent_key(run.run_id, run.created_at), "run_id": run.run_id}
        try:
            # One transaction: a run is never listed without its record, nor recorded without being listed.
            etags = self.runs_table.transact(
                [("create", _encode(run, run.model, f"run:{run.run_id}")), ("create", index)]
            )
        except AlreadyExistsError:
            existing = self.get_run(run.model, run.run_id)
            if existing is None:  # deleted between the two calls
                raise
            return existing
        return replace(run, etag=etags[0])

    def get_run(self, model: str, run_id: str) -> Run | None:
        entity = self.runs_table.get(model, f"run:{check_id(run_id, 'run id')}")
        return _decode(Run, entity) if entity else None

    def require_run(self, model: str, run_id: str) -> Run:
        run = self.get_run(model, run_id)
        if run is None:
            raise RegistryError(f"no run {run_id!r} for model {model!r}", "list the model's runs to find the id")
        return run

    def save_run(self, run: Run) -> Run:
        """Write back a run read earlier; ConcurrencyError if it changed since (its ETag is stale).

        ``created_at`` places the run in the newest-first index: change it only through :meth:`update_run`, which
        moves the index row with it."""
        if run.etag is None:
            raise ConcurrencyError(f"run {run.run_id} has no ETag", "read it with get_run() before saving it")
        expected = run.etag
        run = replace(run, updated_at=_now())
        etag = self.runs_table.replace(_encode(run, run.model, f"run:{run.run_id}"), expected)
        return replace(run, etag=etag)

    def update_run(self, model: str, run_id: str, change: Callable[[Run], Run], attempts: int = 8) -> Run:
        """Read, apply ``change`` and save, re-reading on a conflict; ConcurrencyError after ``attempts``."""
        for _ in range(attempts):
            current = self.require_run(model, run_id)
            changed = change(current)
            try:
                if changed.created_at != current.created_at:
                    return self._save_run_moved(current, changed)
                return self.save_run(changed)
            except ConcurrencyError:
                continue
        raise ConcurrencyError(
            f"run {run_id} kept changing during {attempts} attempts", "retry later; another writer is busy"
        )

    def _save_run_moved(self, current: Run, changed: Run) -> Run:
        """Save a run whose creation time changed (a test ageing its runs) and move its index row in the same
        transaction, so listings and paging keep agreeing with the runs' own times."""
        self._ensure_run_index(current.model)
        changed = replace(changed, updated_at=_now())
        etags = self.runs_table.transact(
            [
                ("update", _encode(changed, changed.model, f"run:{changed.run_id}"), {"etag": current.etag}),
                ("delete", {"PartitionKey": current.model, "RowKey": _recent_key(current.run_id, current.created_at)}),
                (
                    "upsert",
                    {
                        "PartitionKey": changed.model,
                        "RowKey": _recent_key(changed.run_id, changed.created_at),
                        "run_id": changed.run_id,
                    },
                ),
            ]
        )
        return replace(changed, etag=etags[0])

    def runs(self, model: str, limit: int | None = None, after: str | None = None) -> list[Run]:
        """The model's runs, newest first (ties by run id); with ``after`` (a run id), the ones listed after it,
        for paging.

        Reads ``limit`` rows of the newest-first index and then those runs, so a page costs the same however long
        the model's history is (a schedule alone adds a run an hour; every listing, alert and housekeeping tick
        asks). Without ``limit`` every run is read."""
        if limit is None and after is None:
            entities = self.runs_table.query(model, "run:")
            return sorted((_decode(Run, e) for e in entities), key=lambda run: _recent_key(run.run_id, run.created_at))
        self._ensure_run_index(model)
        cursor = None
        if after is not None:
            start = self.get_run(model, check_id(after, "run id"))
            if start is None:
                raise RegistryError(f"no run {after!r} for model {model!r} to list after", "start from the newest")
            cursor = _recent_key(start.run_id, start.created_at)
        if limit is not None and limit <= 0:
            return []
        ids: list[str] = []
        for row in self.runs_table.query(model, _RECENT, after=cursor, select=["run_id"], page_size=limit):
            ids.append(row["run_id"])
            if limit is not None and len(ids) >= limit:
                break
        if len(ids) <= 1:
            found = [self.get_run(model, run_id) for run_id in ids]
        else:
            with ThreadPoolExecutor(max_workers=min(_PARALLEL_READS, len(ids))) as pool:
                found = list(pool.map(lambda run_id: self.get_run(model, run_id), ids))
        return [run for run in found if run is not None]

    def active_runs(self, model: str, *, excluding: str | None = None) -> list[Run]:
        """The model's runs still pending or running, newest first (one run at a time per model), however old.

        The service picks them out (a condition on ``status``), so only they cross the wire.
        ``excluding``: a run asking about the others (say, the one completing its own rollout).
        """
        statuses = sorted(ACTIVE_RUN_STATUSES)
        where = " or ".join(f"status eq @status{i}" for i in range(len(statuses)))
        parameters = {f"status{i}": status for i, status in enumerate(statuses)}
        active = [
            _decode(Run, entity)
            for entity in self.runs_table.query(model, "run:", where=where, parameters=parameters)
            if entity.get("run_id") != excluding
        ]
        return sorted(active, key=lambda run: _recent_key(run.run_id, run.created_at))

    def _ensure_run_index(self, model: str) -> None:
        """Index the runs a model recorded before the newest-first index existed, once per partition.

        A marker row says it was done, so a process asks once per model. Only runs the index does not list are
        added, so a run indexed meanwhile (by create_run, or moved by update_run) is not listed twice."""
        if model in self._indexed_models:
            return
        if self.runs_table.get(model, _RECENT_INDEXED) is None:
            listed = {row["run_id"] for row in self.runs_table.query(model, _RECENT, select=["run_id"])}
            rows: list[Operation] = [
                (
                    "upsert",
                    {
                        "PartitionKey": model,
                        "RowKey": _recent_key(entity["run_id"], entity["created_at"]),
                        "run_id": entity["run_id"],
                    },
                )
                for entity in self.runs_table.query(model, "run:", select=["run_id", "created_at"])
                if entity["run_id"] not in listed
            ]
            self.runs_table.transact(rows, atomic=False)
            self.runs_table.upsert({"PartitionKey": model, "RowKey": _RECENT_INDEXED, "indexed_at": _now()})
            if rows:
                logger.info("indexed %d earlier runs of model %s newest first", len(rows), model)
        self._indexed_models.add(model)

    # ----------------------------------------------------------------- candidates

    def save_candidates(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Record a run's planned candidates and the run's list of them in one atomic transaction."""
        if not candidates:
            return []
        model, run_id = candidates[0].model, candidates[0].run_id
        if any(c.model != model or c.run_id != run_id for c in candidates):
            raise RegistryError("candidates of several runs were saved together", "save one run's candidates at once")
        ops: list[Operation] = [
            ("upsert", _encode(c, model, f"cand:{run_id}:{check_id(c.candidate_id, 'candidate id')}"))
            for c in candidates
        ]
        run = self.require_run(model, run_id)
        ids = list(dict.fromkeys([*run.candidate_ids, *(c.candidate_id for c in candidates)]))
        run = replace(run, candidate_ids=ids, updated_at=_now())
        ops.append(("update", _encode(run, model, f"run:{run_id}"), {"etag": run.etag}))
        self.runs_table.transact(ops)
        return self.candidates(model, run_id)

    def save_candidate(self, candidate: Candidate) -> Candidate:
        """Write back one candidate read earlier (status, job name, metrics); ConcurrencyError if stale."""
        rk = f"cand:{candidate.run_id}:{check_id(candidate.candidate_id, 'candidate id')}"
        candidate = replace(candidate, updated_at=_now())
        entity = _encode(candidate, candidate.model, rk)
        etag = self.runs_table.replace(entity, candidate.etag) if candidate.etag else self.runs_table.create(entity)
        return replace(candidate, etag=etag)

    def candidates(self, model: str, run_id: str) -> list[Candidate]:
        return [_decode(Candidate, e) for e in self.runs_table.query(model, f"cand:{check_id(run_id, 'run id')}:")]

    # ----------------------------------------------------------------- rollout steps

    def record_rollout_step(self, step: RolloutStep) -> RolloutStep:
        """Record step ``index`` of a rollout; re-recording the same index (an activity retry) replaces it."""
        if not 0 <= step.index <= 9999:
            raise RegistryError(f"rollout step index {step.index} is out of range", "use 0-9999")
        rk = f"step:{check_id(step.run_id, 'run id')}:{step.index:04d}"
        etag = self.runs_table.upsert(_encode(step, step.model, rk))
        return replace(step, etag=etag)

    def rollout_steps(self, model: str, run_id: str) -> list[RolloutStep]:
        return [_decode(RolloutStep, e) for e in self.runs_table.query(model, f"step:{check_id(run_id, 'run id')}:")]

    def deciding_step(self, model: str, run_id: str) -> RolloutStep | None:
        """The step that ended a rolled-back rollout: the last one with a failed verdict, else the last one."""
        steps = sorted(self.rollout_steps(model, run_id), key=lambda s: s.index)
        failed = [s for s in steps if s.verdict == "fail"]
        return (failed or steps)[-1] if steps else None

    # ----------------------------------------------------------------- seen blobs (dedupe)

    @staticmethod
    def _seen_key(url: str, blob_etag: str) -> str:
        return "seen:" + _claim_hash(url, blob_etag)

    @staticmethod
    def _claimed_key(run_id: str, url: str, blob_etag: str) -> str:
        return f"{_CLAIMED}{check_id(run_id, 'run id')}:{_claim_hash(url, blob_etag)}"

    def seen(self, model: str, url: str, blob_etag: str) -> SeenBlob | None:
        entity = self.runs_table.get(model, self._seen_key(url, blob_etag))
        return _decode(SeenBlob, entity) if entity else None

    def claim_blobs(self, model: str, run_id: str, blobs: Iterable[tuple[str, str, int]]) -> ClaimResult:
        """Claim blob versions ``(url, eTag, size)`` for ``run_id``; versions another run took are reported.

        New claims are written in atomic batches; if a concurrent claimer wins a race the
        batch rolls back and is retried without the blobs it took, so a version is never
        claimed twice.
        """
        check_id(run_id, "run id")
        wanted = {self._seen_key(u, e): SeenBlob(model, u, e, run_id, size) for u, e, size in blobs}
        claimed: list[SeenBlob] = []
        already: list[SeenBlob] = []
        for _ in range(5):
            pending: list[SeenBlob] = []
            for key, blob in wanted.items():
                existing = self.runs_table.get(model, key)
                if existing is None:
                    pending.append(blob)
                else:
                    record = _decode(SeenBlob, existing)
                    (claimed if record.run_id == run_id else already).append(record)
            try:
                for start in range(0, len(pending), 50):  # two rows a claim; a transaction takes 100
                    chunk = pending[start : start + 50]
                    self.runs_table.transact(
                        [
                            ("create", _encode(b, model, key))
                            for b in chunk
                            for key in (
                                self._seen_key(b.url, b.blob_etag),
                                self._claimed_key(run_id, b.url, b.blob_etag),
                            )
                        ]
                    )
                    claimed.extend(chunk)
                    for b in chunk:
                        wanted.pop(self._seen_key(b.url, b.blob_etag))
                return ClaimResult(claimed=claimed, already_seen=already)
            except AlreadyExistsError:
                # Lost a race for one blob of this chunk: the chunk rolled back; look again.
                for record in (*claimed, *already):
                    wanted.pop(self._seen_key(record.url, record.blob_etag), None)
                continue
        raise ConcurrencyError(f"claiming blobs for run {run_id} kept racing", "retry the activity")

    def mark_merged(self, model: str, run_id: str, into: str) -> None:
        """A pending request that joined run ``into``'s claim is answered by that run: recorded ``merged`` (else
        it would block the model with 409s and be claimed again later). No record, or not pending: unchanged."""
        # a retried request is pointed at that run
        self._close_pending(
            model, run_id, "merged", f"merged into run {into}, which trains for it", {"merged_into": into}
        )

    def mark_suppressed(self, model: str, run_id: str, reason: str) -> None:
        """A monitor's alert that waited behind a run is not run after all (see
        :func:`shared.events.queued_alert_blocked`): recorded ``suppressed`` with ``reason``. No record, or not
        pending: unchanged."""
        self._close_pending(model, run_id, "suppressed", reason, {})

    def _close_pending(self, model: str, run_id: str, status: str, reason: str, details: dict[str, Any]) -> None:
        def close(run: Run) -> Run:
            if run.status != "pending":
                return run
            return replace(
                run, status=status, stage="done", decision_reasons=[reason], details={**run.details, **details}
            )

        current = self.get_run(model, run_id)
        if current is not None and current.status == "pending":
            self.update_run(model, run_id, close)

    def seen_etags(self, model: str, claimed_since: datetime | None = None) -> set[str]:
        """The eTags of the blob versions runs of ``model`` have claimed (one query, eTags only); with
        ``claimed_since``, only claims made then or later (the service picks them out by the rows' Timestamp:
        claims are written once). A blob written at t can only have been claimed after t, so a training window's
        start bounds the claims that can matter to a listing, not the model's whole history."""
        if claimed_since is None:
            rows = self.runs_table.query(model, "seen:", select=["blob_etag"])
        else:
            since = claimed_since if claimed_since.tzinfo is not None else claimed_since.replace(tzinfo=UTC)
            rows = self.runs_table.query(
                model, "seen:", where="Timestamp ge @since", parameters={"since": since}, select=["blob_etag"]
            )
        return {e["blob_etag"] for e in rows}

    def release_unrecorded_claims(self, model: str, since: datetime, before: datetime) -> list[SeenBlob]:
        """Free the claims made from ``since`` up to ``before`` by a run that has no record, and return them.

        claim_run writes a burst's claims, then its run: a failure between the two (storage down past the
        activity's retries) left those blob versions claimed by a run that never existed, so no run took them
        until some later run listed the whole folder. Only the model's coordinator claims for a run not yet
        recorded, and it asks for this between claims (``pending_work``), so a claim older than ``before`` whose run
        is missing is such an orphan. Its index row goes first: a release cut short is finished by the next one."""
        since, before = (t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in (since, before))
        rows = self.runs_table.query(model, "seen:", where="Timestamp ge @since", parameters={"since": since})
        by_run: dict[str, list[SeenBlob]] = {}
        for claim in (_decode(SeenBlob, row) for row in rows):
            if claim.seen_at < before:
                by_run.setdefault(claim.run_id, []).append(claim)
        released: list[SeenBlob] = []
        for run_id, claims in sorted(by_run.items()):
            if self.get_run(model, run_id) is not None:
                continue
            for claim in claims:
                self.runs_table.delete(model, self._claimed_key(run_id, claim.url, claim.blob_etag))
                self.runs_table.delete(model, self._seen_key(claim.url, claim.blob_etag))
            released.extend(claims)
        return released

    def run_blobs(self, model: str, run_id: str, created_at: datetime | None = None) -> list[SeenBlob]:
        """The blob versions ``run_id`` (created at ``created_at``, if known) claimed: one range read of its
        ``claimed:`` rows. A run created before CLAIMS_INDEXED_SINCE (or of unknown age) may have claimed some of
        them before those rows were written (a run in flight across the upgrade): its claims are also looked up
        among all the model's claims, as every run's were before."""
        rows = self.runs_table.query(model, f"{_CLAIMED}{check_id(run_id, 'run id')}:")
        found = {(b.url, b.blob_etag): b for b in (_decode(SeenBlob, e) for e in rows)}
        if created_at is not None and created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
        if created_at is None or created_at < CLAIMS_INDEXED_SINCE:
            scanned = self.runs_table.query(model, "seen:", where="run_id eq @run", parameters={"run": run_id})
            for blob in (_decode(SeenBlob, e) for e in scanned):
                found.setdefault((blob.url, blob.blob_etag), blob)
        return list(found.values())

    # ----------------------------------------------------------------- versions and the champion

    def register_version(self, version: ModelVersion) -> ModelVersion:
        """Record a registered version's lineage; registering the same version again returns the first record."""
        try:
            etag = self.models_table.create(_encode(version, version.model, _version_key(version.version)))
        except AlreadyExistsError:
            return self.require_version(version.model, version.version)
        return replace(version, etag=etag)

    def version(self, model: str, version: str) -> ModelVersion | None:
        entity = self.models_table.get(model, _version_key(version))
        return _decode(ModelVersion, entity) if entity else None

    def require_version(self, model: str, version: str) -> ModelVersion:
        found = self.version(model, version)
        if found is None:
            raise RegistryError(f"model {model!r} has no version {version!r}", "list its versions")
        return found

    def versions(self, model: str) -> list[ModelVersion]:
        """Registered versions, newest first."""
        return [_decode(ModelVersion, e) for e in self.models_table.query(model, "version:")][::-1]

    def champion(self, model: str) -> Champion | None:
        entity = self.models_table.get(model, "champion")
        return _decode(Champion, entity) if entity else None

    def set_champion(self, champion: Champion) -> Champion:
        """Point the model at a new champion. ``champion.etag`` must be the current pointer's ETag
        (None when the model has none yet); a concurrent promotion raises ConcurrencyError."""
        entity = _encode(champion, champion.model, "champion")
        if champion.etag is None:
            try:
                etag = self.models_table.create(entity)
            except AlreadyExistsError:
                raise ConcurrencyError(
                    f"model {champion.model} already has a champion", "read it with champion() and pass its etag"
                ) from None
        else:
            etag = self.models_table.replace(entity, champion.etag)
        return replace(champion, etag=etag)

    # ----------------------------------------------------------------- lineage

    def lineage(self, model: str, run_id: str) -> Lineage:
        run = self.require_run(model, run_id)
        version = self.version(model, run.registered_version) if run.registered_version else None
        return Lineage(
            run=run,
            candidates=self.candidates(model, run_id),
            rollout=self.rollout_steps(model, run_id),
            blobs=self.run_blobs(model, run_id, run.created_at),
            version=version,
        )
