"""The ML platform port: what the orchestrations need from "the ML platform", as one typed Protocol.

In Azure the adapter is :mod:`shared.platform.azureml` (azure-ai-ml, imported lazily: it is
heavy); locally it is :mod:`shared.platform.local` (subprocess jobs, a file-backed model
registry and a real HTTP scoring server on loopback). Both adapters check the traffic
invariants in :mod:`shared.platform.traffic` before they send anything.

Every operation takes and returns frozen dataclasses (one in, one out, Temporal-style), so
a field can be added later without breaking callers; a plain ``str`` is used only where the
single key of a resource is all an operation needs. Job state keeps Azure ML's own status
string (``JobState.status``) and adds a normalised :data:`JobPhase` the orchestrations branch on.

Importing this module loads neither adapter (and so neither ``azure.ai.ml`` nor subprocess
machinery): :func:`create_platform` imports the one the settings ask for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from shared.settings import Settings

# --------------------------------------------------------------------------- errors


class PlatformError(RuntimeError):
    """A platform operation could not be done. ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})")


class NotFoundError(PlatformError, LookupError):
    """The job, model, compute, endpoint or deployment does not exist."""

    def __init__(self, kind: str, name: str, hint: str | None = None) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} was not found", hint or f"check the {kind} name, or create it first")


class InvalidRequestError(PlatformError, ValueError):
    """The request is malformed (a bad name, count or path); nothing was sent."""


class TrafficInvariantError(InvalidRequestError):
    """A traffic change or deletion would break a traffic invariant; it was refused before any request."""


class DeploymentFailedError(PlatformError):
    """A deployment did not become healthy (crash on load, failing readiness probe, bad model)."""


class TransientPlatformError(PlatformError):
    """The platform kept answering 429/5xx after every retry; try again later."""


# --------------------------------------------------------------------------- names

#: Azure ML names endpoints, deployments, computes and models with this pattern (3-32 chars for endpoints).
_RESOURCE_NAME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]*[a-zA-Z0-9]$")
#: Job names: letters, digits, '-' and '_' (Azure ML allows up to 255 characters).
_JOB_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$")
#: Model names may also contain '.' and '_'.
_MODEL_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,254}$")


def check_resource_name(kind: str, name: str, max_length: int = 32) -> str:
    """Refuse an endpoint/deployment/compute name Azure ML would refuse (3-32 chars, letter first, no trailing '-')."""
    if 3 <= len(name) <= max_length and _RESOURCE_NAME.match(name):
        return name
    raise InvalidRequestError(
        f"{kind} name {name!r} is not a valid Azure ML name",
        f"use 3-{max_length} characters: a letter first, then letters, digits or '-', not ending in '-'",
    )


def check_job_name(name: str) -> str:
    if _JOB_NAME.match(name):
        return name
    raise InvalidRequestError(
        f"job name {name!r} is not a valid Azure ML job name",
        "use letters, digits, '-' or '_' (at most 255), starting with a letter or digit",
    )


def check_model_name(name: str) -> str:
    if _MODEL_NAME.match(name):
        return name
    raise InvalidRequestError(
        f"model name {name!r} is not a valid Azure ML model name",
        "use letters, digits, '.', '-' or '_', starting with a letter or digit",
    )


# --------------------------------------------------------------------------- compute


@dataclass(frozen=True)
class ComputeSpec:
    """An AmlCompute cluster. ``min_instances`` stays 0 so an idle cluster costs nothing."""

    name: str
    instance_type: str = "Standard_NC4as_T4_v3"
    max_instances: int = 4
    min_instances: int = 0
    idle_seconds_before_scale_down: int = 600
    tier: Literal["dedicated", "low_priority"] = "dedicated"


@dataclass(frozen=True)
class ComputeState:
    name: str
    instance_type: str
    min_instances: int
    max_instances: int
    provisioning_state: str


# --------------------------------------------------------------------------- jobs

#: The normalised phase of a job. ``preempted`` is a failure the caller should resume from a
#: checkpoint (train.py exits 75 after SIGTERM; Azure reports low-priority preemption as a failure).
JobPhase = Literal["queued", "running", "completed", "failed", "canceled", "preempted"]
TERMINAL_PHASES: frozenset[str] = frozenset({"completed", "failed", "canceled", "preempted"})

#: Azure ML job status strings, in life-cycle order, and the phase each one means.
STATUS_PHASES: dict[str, JobPhase] = {
    "NotStarted": "queued",
    "Queued": "queued",
    "Preparing": "queued",
    "Provisioning": "queued",
    "Starting": "running",
    "Running": "running",
    "Finalizing": "running",
    "CancelRequested": "running",
    "Completed": "completed",
    "Failed": "failed",
    "Canceled": "canceled",
    "NotResponding": "failed",
    "Paused": "failed",
    "Unknown": "running",
}

#: train.py's exit code for "preempted after SIGTERM, checkpoint written: resubmit with --resume auto".
PREEMPTED_EXIT_CODE = 75
#: train.py's and evaluate.py's exit code for a failure a retry would repeat (bad arguments or data, a diverged
#: run: training_jobs/errors.py EXIT_BAD_INPUT); argparse exits with it too.
BAD_INPUT_EXIT_CODE = 2


def job_phase(status: str, preempted: bool = False) -> JobPhase:
    """The phase of an Azure ML status string; an unknown string is treated as still running (poll again)."""
    phase = STATUS_PHASES.get(status, "running")
    if phase == "failed" and preempted:
        return "preempted"
    return phase


@dataclass(frozen=True)
class JobInput:
    """One job input. ``path`` is a local path, an https/azureml:// URI, ``azureml://jobs/<job>/outputs/<name>``
    or a registered model ``azureml:<model>:<version>`` (both adapters resolve the last two)."""

    path: str
    type: Literal["uri_file", "uri_folder", "custom_model"] = "uri_folder"


@dataclass(frozen=True)
class JobSpec:
    """A training or evaluation command job. ``name`` is chosen by the caller and deterministic: submitting
    the same name twice returns the existing job.

    ``args`` may use two kinds of placeholder, resolved by the adapter: ``{inputs.<name>}`` (where the
    input is mounted) and ``{outputs}`` (the job's output folder, registered later as the model), e.g.
    ``("--data", "{inputs.data}", "--contract", "{inputs.contract}", "--output-dir", "{outputs}")``.
    """

    name: str
    experiment_name: str
    compute: str
    script: str = "train.py"
    code: str = "training_jobs"
    args: tuple[str, ...] = ()
    inputs: Mapping[str, JobInput] = field(default_factory=dict)
    kind: Literal["training", "evaluation"] = "training"
    instance_type: str | None = None
    instance_count: int = 1
    distribution: Literal["none", "pytorch"] = "none"
    processes_per_instance: int = 1
    timeout_seconds: int = 4 * 3600
    environment: str | None = None
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    display_name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


#: The name of every job's single output folder (``{outputs}`` in the args).
OUTPUT_NAME = "artifacts"


def job_output_uri(job_name: str, output: str = OUTPUT_NAME) -> str:
    """Azure ML's URI of a job output; both adapters accept it as a model path or job input."""
    return f"azureml://jobs/{job_name}/outputs/{output}"


@dataclass(frozen=True)
class JobState:
    name: str
    status: str  # Azure ML's own status string, e.g. "Queued", "Running", "Completed"
    phase: JobPhase
    experiment_name: str
    outputs_uri: str  # azureml://jobs/<name>/outputs/artifacts
    error: str | None = None
    preempted: bool = False
    exit_code: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    local_outputs_path: str | None = None  # where the outputs are on disk (local adapter only)
    studio_url: str | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def retryable(self) -> bool:
        """Whether another attempt could succeed: not after the job said its input is bad (exit 2)."""
        return not (self.phase == "failed" and self.exit_code == BAD_INPUT_EXIT_CODE)


@dataclass(frozen=True)
class JobOutputRequest:
    """One file of a finished job's output folder, e.g. ``metrics.json`` or ``comparison.json`` (a relative path)."""

    job_name: str
    path: str


def check_output_path(path: str) -> str:
    """A relative path inside the output folder: no absolute paths, no '..' (outputs are untrusted input)."""
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise InvalidRequestError(
            f"output path {path!r} is not a plain relative path",
            "name a file inside the output folder, e.g. metrics.json",
        )
    return "/".join(parts)


@dataclass(frozen=True)
class LogsRequest:
    job_name: str
    tail_lines: int | None = 200


# --------------------------------------------------------------------------- models

#: The model tag that marks the champion (see :meth:`MLPlatform.set_champion`).
CHAMPION_TAG = "perennial.champion"


@dataclass(frozen=True)
class ModelRegistration:
    """Register a new version of ``name`` from a job's outputs (``path`` defaults to the job's output folder)."""

    name: str
    job_name: str
    path: str | None = None
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)  # lineage: trigger, data hashes, params, metrics


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: str
    tags: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    created_at: datetime | None = None
    job_name: str | None = None

    @property
    def is_champion(self) -> bool:
        return self.tags.get(CHAMPION_TAG) == "true"

    @property
    def reference(self) -> str:
        """``azureml:<name>:<version>``, usable as a JobInput path or a deployment's model."""
        return f"azureml:{self.name}:{self.version}"


# --------------------------------------------------------------------------- endpoints and deployments


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Traffic:
    """Live traffic per deployment (percent, sums to 100, or 0 with no deployments) and mirrored traffic
    (at most one deployment, at most 50, to a deployment without live traffic)."""

    live: Mapping[str, int] = field(default_factory=dict)
    mirror: Mapping[str, int] = field(default_factory=dict)

    def live_percent(self, deployment: str) -> int:
        return int(self.live.get(deployment, 0))

    def mirror_percent(self, deployment: str) -> int:
        return int(self.mirror.get(deployment, 0))


@dataclass(frozen=True)
class EndpointState:
    name: str
    scoring_uri: str
    traffic: Traffic
    provisioning_state: str
    auth_mode: str = "key"


@dataclass(frozen=True)
class ProbeSpec:
    """Liveness/readiness probe settings (Azure ML's ProbeSettings)."""

    initial_delay_seconds: int = 10
    period_seconds: int = 10
    timeout_seconds: int = 2
    failure_threshold: int = 30
    success_threshold: int = 1


@dataclass(frozen=True)
class DeploymentSpec:
    endpoint: str
    name: str
    model_name: str
    model_version: str
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = 1
    code: str = "training_jobs"
    scoring_script: str = "score.py"
    environment: str | None = None
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    liveness_probe: ProbeSpec = field(default_factory=ProbeSpec)
    readiness_probe: ProbeSpec = field(default_factory=ProbeSpec)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentRef:
    endpoint: str
    name: str


@dataclass(frozen=True)
class DeploymentState:
    endpoint: str
    name: str
    model_name: str
    model_version: str
    instance_type: str
    instance_count: int
    provisioning_state: str  # Creating, Updating, Succeeded, Failed, Deleting
    error: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def provisioning(self) -> bool:
        """Azure is still creating or updating it: poll :meth:`MLPlatform.get_deployment` until it is not."""
        return self.provisioning_state in PROVISIONING_STATES

    def serves(self, spec: DeploymentSpec) -> bool:
        """It runs ``spec``'s model version on ``spec``'s capacity: sending ``spec`` again would change nothing
        that matters (and, in Azure, would start another provisioning of many minutes)."""
        return (self.model_name, self.model_version, self.instance_type, self.instance_count) == (
            spec.model_name,
            spec.model_version,
            spec.instance_type,
            spec.instance_count,
        )


#: Provisioning states of a deployment Azure ML is still working on.
PROVISIONING_STATES = frozenset({"Creating", "Updating"})


@dataclass(frozen=True)
class TrafficUpdate:
    endpoint: str
    traffic: Traffic
    #: Let live traffic sum to 0 while deployments exist (the endpoint serves nothing). Only for taking a
    #: failed first model off an endpoint that has no champion to return to; never the default.
    allow_no_live_traffic: bool = False


@dataclass(frozen=True)
class InvokeRequest:
    """Score ``payload`` (``{"data": [{col: value}, ...]}``) on the endpoint's split, or on one deployment."""

    endpoint: str
    payload: Mapping[str, Any]
    deployment: str | None = None
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class InvokeResult:
    status_code: int
    body: Any
    latency_ms: float
    deployment: str | None = None  # which deployment answered, when the platform says (local: always)


@dataclass(frozen=True)
class DeploymentLogsRequest:
    endpoint: str
    deployment: str
    lines: int = 200


@dataclass(frozen=True)
class MetricsQuery:
    endpoint: str
    deployment: str
    start: datetime
    end: datetime
    include_mirrored: bool = False  # local: also count mirrored (shadow) requests


@dataclass(frozen=True)
class LatencyWindow:
    """The p95 latency (ms) of one deployment's requests in ``[start, start + seconds)``. ``requests``: how many
    requests the window held, None where the platform does not say."""

    start: datetime
    seconds: float
    p95_ms: float
    requests: int | None = None


@dataclass(frozen=True)
class DeploymentMetrics:
    """Health of one deployment over a window. Latencies in milliseconds; None where there were no requests.
    ``latencies_ms`` / ``predicted_classes`` are raw samples where the adapter has them (local), so the
    canary analysis can run statistical tests; Azure Monitor only gives aggregates (they are then empty).
    ``p95_windows`` is the p95 of each time window with requests, oldest first (Azure: Azure Monitor's
    per-minute p95; local: computed from the samples); two queries with the same ``start`` and ``end`` give
    windows with the same starts, so the canary can pair the challenger's windows with the champion's."""

    endpoint: str
    deployment: str
    start: datetime
    end: datetime
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    latencies_ms: Sequence[float] = ()
    predicted_classes: Sequence[str] = ()
    has_samples: bool = False
    p95_windows: Sequence[LatencyWindow] = ()

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


# --------------------------------------------------------------------------- scoring records

#: Rows of one request whose input values are kept in its scoring record (predictions are kept for every row).
MAX_INPUT_ROWS = 100


@dataclass(frozen=True)
class ScoringQuery:
    """The scored requests of one deployment in ``[start, end)``, oldest first. When more than ``limit`` match,
    a uniform sample of ``limit`` of them, spread over the whole window and the same on every read
    (:class:`~shared.platform.scoring.RequestSample`).

    ``include_inputs=False`` skips the input rows (the live-accuracy join needs only ids and predictions)."""

    endpoint: str
    deployment: str
    start: datetime
    end: datetime
    include_mirrored: bool = False  # also mirrored (shadow) copies; Azure's collector does not mark them
    include_inputs: bool = True
    limit: int = 50_000


@dataclass(frozen=True)
class ScoringRecord:
    """One scored request: its id (the client's ``x-ms-client-request-id`` / ``x-request-id``, else generated),
    the predicted class of every input row (as text, in row order), and the input values of its first
    :data:`MAX_INPUT_ROWS` rows. ``status`` / ``latency_ms`` are None where the platform does not record them
    (Azure ML's data collector logs only what score.py collected)."""

    request_id: str
    time: datetime
    deployment: str
    status: int | None = 200
    latency_ms: float | None = None
    mirrored: bool = False
    rows: int = 0  # input rows of the request (``inputs`` may hold fewer)
    predictions: tuple[str, ...] = ()
    #: Binary: P(positive) per row; multiclass: the predicted class's probability; None where absent.
    probabilities: tuple[float | None, ...] = ()
    inputs: tuple[Mapping[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class ScoringRecords:
    """The answer to a :class:`ScoringQuery`. ``truncated``: more requests matched than ``limit``, so
    ``records`` is a uniform sample of them."""

    endpoint: str
    deployment: str
    start: datetime
    end: datetime
    records: tuple[ScoringRecord, ...] = ()
    truncated: bool = False


# --------------------------------------------------------------------------- the port


@runtime_checkable
class MLPlatform(Protocol):
    """What Perennial needs from the ML platform. Every method may raise :class:`PlatformError` subclasses."""

    def ensure_compute(self, spec: ComputeSpec) -> ComputeState:
        """Create the cluster if it is missing (min 0 nodes); return it as it is."""
        ...

    def submit_job(self, spec: JobSpec) -> JobState:
        """Submit a job; if a job of that name exists, return it instead (idempotent by name)."""
        ...

    def get_job(self, name: str) -> JobState:
        """The job's current state; NotFoundError if there is none of that name."""
        ...

    def cancel_job(self, name: str) -> JobState:
        """Ask the job to stop (a terminal job is returned unchanged)."""
        ...

    def job_logs(self, request: LogsRequest) -> str:
        """The job's user logs (stdout/stderr), the last ``tail_lines`` lines."""
        ...

    def read_job_output(self, request: JobOutputRequest) -> bytes:
        """A small file from a finished job's output folder (metrics.json, comparison.json); NotFoundError if absent."""
        ...

    def register_model(self, request: ModelRegistration) -> ModelVersion:
        """Register the next version of a model from a job's outputs, with tags and lineage properties."""
        ...

    def get_model(self, name: str, version: str) -> ModelVersion: ...

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first (empty if the model was never registered)."""
        ...

    def latest_model(self, name: str) -> ModelVersion | None: ...

    def champion(self, name: str) -> ModelVersion | None:
        """The version tagged ``perennial.champion=true`` (the newest such, should two carry it), or None."""
        ...

    def set_champion(self, name: str, version: str) -> ModelVersion:
        """Tag ``version`` champion, then untag the previous one (so there is never a moment with none)."""
        ...

    def ensure_endpoint(self, spec: EndpointSpec) -> EndpointState: ...

    def get_endpoint(self, name: str) -> EndpointState: ...

    def delete_endpoint(self, name: str) -> None: ...

    def create_or_update_deployment(self, spec: DeploymentSpec) -> DeploymentState:
        """Start creating or updating a deployment, and return its state: ``Succeeded`` once it serves, or
        ``Creating``/``Updating`` while the platform provisions it (Azure takes many minutes: poll
        :meth:`get_deployment`, from the orchestrator, on durable timers). DeploymentFailedError when it failed.
        In Azure, a deployment that already :meth:`DeploymentState.serves` ``spec`` (ready or provisioning) is not
        sent again; the local platform provisions at once and simply makes it again."""
        ...

    def get_deployment(self, ref: DeploymentRef) -> DeploymentState: ...

    def list_deployments(self, endpoint: str) -> list[DeploymentState]: ...

    def delete_deployment(self, ref: DeploymentRef) -> None:
        """Delete a deployment that takes no live or mirrored traffic (TrafficInvariantError otherwise)."""
        ...

    def get_traffic(self, endpoint: str) -> Traffic: ...

    def set_traffic(self, update: TrafficUpdate) -> Traffic:
        """Set live + mirror traffic after checking every invariant; return the traffic now in force."""
        ...

    def invoke(self, request: InvokeRequest) -> InvokeResult: ...

    def deployment_logs(self, request: DeploymentLogsRequest) -> str: ...

    def deployment_metrics(self, query: MetricsQuery) -> DeploymentMetrics: ...

    def scoring_records(self, query: ScoringQuery) -> ScoringRecords:
        """The requests one deployment scored in the window (ids, predictions, bounded inputs), oldest first;
        empty when nothing was recorded. Local: the scoring server's logs; Azure: the data collector's output."""
        ...


def create_platform(settings: Settings) -> MLPlatform:
    """The adapter the settings ask for (``PERENNIAL_PLATFORM``); imports only that adapter."""
    if settings.platform == "azureml":
        from shared.platform.azureml import AzureMLPlatform

        if settings.azureml is None:  # load_settings guarantees it; keep mypy and readers sure
            raise PlatformError("PERENNIAL_PLATFORM=azureml but no workspace is configured", "set AZUREML_* settings")
        return AzureMLPlatform.from_settings(settings.azureml)
    from shared.platform.local import LocalPlatform

    return LocalPlatform(settings.state_dir)
