"""The Azure ML adapter of the platform port (azure-ai-ml 1.35), plus Azure Monitor for deployment health.

``azure.ai.ml`` is imported inside the methods, never at module level: it takes 1.3-1.7 s and
prints warnings on import, and most Function invocations never touch it.

How it maps the port onto Azure ML:

- jobs are ``command()`` jobs with ``experiment_name`` always set (the SDK's default is the
  current folder's name), ``limits.timeout``, a PyTorch distribution when asked and one
  ``uri_folder`` output named ``artifacts``; ``{inputs.x}`` / ``{outputs}`` in the args become
  ``${{inputs.x}}`` / ``${{outputs.artifacts}}``. Submit is idempotent by name: GET first, PUT
  only if missing, and a conflicting concurrent PUT falls back to the GET.
- Code: ``JobSpec.code`` / ``DeploymentSpec.code`` may be a code asset id (``azureml:<name>:<version>``,
  registered once by the deployment pipeline: nothing is uploaded per job) or a local folder,
  which the SDK uploads itself (content-hashed, so each version once) through its own blob client.
- models are registered from ``azureml://jobs/<job>/outputs/artifacts``; the champion is the
  version tagged ``perennial.champion=true`` (tags are mutable on a model version, and unlike
  registry aliases they need no registry).
- traffic is the endpoint's ``traffic`` / ``mirror_traffic``, written with one endpoint PUT after
  the invariants in :mod:`shared.platform.traffic` have been checked (the SDK checks none).
- every call is retried on 408/429/5xx and connection errors with exponential backoff and full
  jitter (tenacity); the SDK's own retries are off (``retry_total=0``) so there is one policy.
  Re-running a whole operation is safe because every write is a PUT by name.
- a 404 becomes :class:`NotFoundError`; any other service error a :class:`PlatformError` with a hint.
- scoring is a POST to the endpoint's scoring URI through a plain azure-core pipeline (an Entra ID token for
  ``https://ml.azure.com``), not ``online_endpoints.invoke``: see :meth:`AzureMLPlatform.invoke`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from shared.platform import (
    CHAMPION_TAG,
    OUTPUT_NAME,
    ComputeSpec,
    ComputeState,
    DeploymentFailedError,
    DeploymentLogsRequest,
    DeploymentMetrics,
    DeploymentRef,
    DeploymentSpec,
    DeploymentState,
    EndpointSpec,
    EndpointState,
    InvalidRequestError,
    InvokeRequest,
    InvokeResult,
    JobOutputRequest,
    JobSpec,
    JobState,
    LogsRequest,
    MetricsQuery,
    ModelRegistration,
    ModelVersion,
    NotFoundError,
    PlatformError,
    ProbeSpec,
    ScoringQuery,
    ScoringRecords,
    Traffic,
    TrafficUpdate,
    TransientPlatformError,
    check_job_name,
    check_model_name,
    check_output_path,
    check_resource_name,
    job_output_uri,
    job_phase,
)
from shared.platform.azure_metrics import metrics_endpoint, query_deployment_metrics
from shared.platform.scoring import (
    INPUTS_COLLECTION,
    OUTPUTS_COLLECTION,
    CollectedRequests,
    collector_prefixes,
    parse_collector_line,
)
from shared.platform.traffic import check_deletable, check_traffic, check_traffic_shape

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.settings import AzureMLSettings

T = TypeVar("T")
logger = logging.getLogger(__name__)


class _StillProvisioning(Exception):
    """An endpoint's creation outlasted the wait one call may spend on it (not an SDK error: never retried)."""


TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Scoring answers worth another try: the gateway's or the throttle's, not the model's. A 500 is score.py's own
#: answer (it raised), so it comes back at once as the result.
SCORING_RETRY_STATUS = TRANSIENT_STATUS - {500}
#: The token audience of an ``aad_token`` online endpoint: azure-ai-ml's AAD_TOKEN_RESOURCE_ENDPOINT
#: ("https://ml.azure.com") as a scope, which is what its own invoke asks the credential for.
SCORING_SCOPE = "https://ml.azure.com/.default"
#: Request header that pins a deployment; the response header that names the deployment that answered.
DEPLOYMENT_HEADER = "azureml-model-deployment"
REPO_ROOT = Path(__file__).resolve().parents[2]
#: How a failed job says it was preempted: Azure's own wording, or train.py's exit code 75 (SIGTERM + checkpoint).
_PREEMPTED = re.compile(r"preempt|\b(?:exit|status) code:?\s*75\b", re.IGNORECASE)
#: The user process's exit code in a failed job's error ("User process 'python' exited with status code 2 …"); only
#: that wording, so an infrastructure message that mentions some other exit code cannot stop the retries.
_EXIT_CODE = re.compile(r"\bexited with (?:status|exit) code:?\s*(\d+)\b", re.IGNORECASE)
DEFAULT_TRAINING_ENVIRONMENT = "perennial-train@latest"
DEFAULT_SCORING_ENVIRONMENT = "perennial-score@latest"


def _is_transient(exc: BaseException) -> bool:
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in TRANSIENT_STATUS


def _text(value: object) -> str:
    """An SDK enum's value ("Succeeded"), or the string itself."""
    return str(getattr(value, "value", value))


def _service_message(exc: Exception) -> str:
    message = str(getattr(exc, "message", None) or exc)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines[:3])[:500] if lines else type(exc).__name__


class AzureMLPlatform:
    """The Azure adapter of :class:`shared.platform.MLPlatform`."""

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        workspace_name: str,
        credential: TokenCredential,
        *,
        client_kwargs: Mapping[str, Any] | None = None,
        code_root: str | Path = REPO_ROOT,
        training_environment: str = DEFAULT_TRAINING_ENVIRONMENT,
        scoring_environment: str = DEFAULT_SCORING_ENVIRONMENT,
        retry_attempts: int = 6,
        retry_max_wait: float = 30.0,
        retry_initial_wait: float = 1.0,
        outputs_datastore: str = "workspaceblobstore",
        blob_service_factory: Callable[[str], Any] | None = None,
        collect_data: bool = True,
        collector_datastore: str = "workspaceblobstore",
        deployment_wait_seconds: float = 20.0,
        endpoint_wait_seconds: float = 300.0,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace_name = workspace_name
        self.credential = credential
        # Tests pass a fake transport here; in Azure it is empty. The SDK's own retries are off: ours wrap each call.
        self.client_kwargs: dict[str, Any] = {"retry_total": 0, **(client_kwargs or {})}
        self.code_root = Path(code_root)
        self.training_environment = training_environment
        self.scoring_environment = scoring_environment
        self._retrying = Retrying(
            stop=stop_after_attempt(retry_attempts),
            wait=wait_random_exponential(multiplier=retry_initial_wait, max=retry_max_wait),
            retry=retry_if_exception(_is_transient),
            reraise=True,  # after the last attempt, the service's own error (mapped below), not a RetryError
        )
        self.outputs_datastore = outputs_datastore
        # Tests point this at Azurite; in Azure it is a BlobServiceClient on the datastore's account with our identity.
        self._blob_service_factory = blob_service_factory
        # Deployments log model_inputs / model_outputs with Azure ML's data collector (score.py calls it);
        # scoring_records reads them from this datastore's default path.
        self.collect_data = collect_data
        self.collector_datastore = collector_datastore
        # How long one call waits for a long-running operation before it answers "still provisioning".
        self.deployment_wait_seconds = deployment_wait_seconds
        self.endpoint_wait_seconds = endpoint_wait_seconds
        self._ml: Any = None
        self._location: str | None = None
        self._pipelines: dict[str | None, Any] = {}

    @classmethod
    def from_settings(cls, settings: AzureMLSettings) -> AzureMLPlatform:
        """Managed identity in Azure (``AZURE_CLIENT_ID`` picks a user-assigned one), developer credentials locally."""
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=settings.client_id)
        return cls(settings.subscription_id, settings.resource_group, settings.workspace_name, credential)

    # ================================================================= plumbing

    @property
    def ml(self) -> Any:
        """The MLClient, created on first use (this is where azure.ai.ml gets imported)."""
        if self._ml is None:
            from azure.ai.ml import MLClient

            self._ml = MLClient(
                self.credential, self.subscription_id, self.resource_group, self.workspace_name, **self.client_kwargs
            )
        return self._ml

    def _pipeline(self, scope: str | None = None) -> Any:
        """A plain azure-core pipeline on the MLClient's transport (tests: the fake), for requests the SDK has no
        sound call for: scoring (see :meth:`invoke`) and log downloads. It has no RetryPolicy, so ``_call``'s
        retries are the only ones (the SDK's ``_requests_pipeline`` picks up 3 retries of its own once its
        operations are built). With ``scope``, azure-core's policy adds (caches, refreshes) a bearer token."""
        pipeline = self._pipelines.get(scope)
        if pipeline is None:
            from azure.core.pipeline import Pipeline
            from azure.core.pipeline.policies import BearerTokenCredentialPolicy, UserAgentPolicy
            from azure.core.pipeline.transport import RequestsTransport

            policies: list[Any] = [UserAgentPolicy(sdk_moniker="perennial")]
            if scope is not None:
                policies.append(BearerTokenCredentialPolicy(self.credential, scope))
            transport = self.client_kwargs.get("transport") or RequestsTransport()
            pipeline = self._pipelines.setdefault(scope, Pipeline(transport, policies))
        return pipeline

    def _call(self, what: str, fn: Callable[[], T], not_found: tuple[str, str] | None = None) -> T:
        """Run ``fn`` with retries on transient errors; translate SDK errors into the port's errors."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            return self._retrying(fn)
        except ResourceNotFoundError as exc:
            if not_found is not None:
                raise NotFoundError(not_found[0], not_found[1]) from exc
            raise NotFoundError("resource", what, _service_message(exc)) from exc
        except HttpResponseError as exc:
            if _is_transient(exc):
                raise TransientPlatformError(
                    f"{what}: Azure ML kept answering {exc.status_code} ({_service_message(exc)})",
                    "the service is throttling or unavailable: retry later, or lower the request rate",
                ) from exc
            if exc.status_code == 404 and not_found is not None:
                raise NotFoundError(not_found[0], not_found[1]) from exc
            raise PlatformError(
                f"{what}: Azure ML answered {exc.status_code}: {_service_message(exc)}",
                "check the request against the message; 401/403 mean the Function App's identity lacks a role",
            ) from exc
        except Exception as exc:
            if _is_transient(exc):
                raise TransientPlatformError(f"{what}: {exc}", "the service is unreachable: retry later") from exc
            if type(exc).__module__.startswith("azure.ai.ml"):
                # The SDK's own validation errors (bad names, missing fields): the request was never sent.
                raise InvalidRequestError(f"{what}: {_service_message(exc)}", "fix the request") from exc
            raise

    def _code(self, code: str) -> str:
        """A code asset as the ARM id the SDK passes through untouched, or a local folder the SDK uploads."""
        if code.startswith("azureml:") and code.count(":") == 2:
            _, name, version = code.split(":")
            return f"{self.workspace_id}/codes/{name}/versions/{version}"
        return code if code.startswith(("azureml:", "/subscriptions/")) else str(self.code_root / code)

    @property
    def workspace_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )

    # ================================================================= compute

    def ensure_compute(self, spec: ComputeSpec) -> ComputeState:
        check_resource_name("compute", spec.name, max_length=24)
        from azure.ai.ml.entities import AmlCompute
        from azure.core.exceptions import ResourceNotFoundError

        def ensure() -> Any:
            try:
                return self.ml.compute.get(spec.name)
            except ResourceNotFoundError:
                cluster = AmlCompute(
                    name=spec.name,
                    size=spec.instance_type,
                    min_instances=spec.min_instances,
                    max_instances=spec.max_instances,
                    idle_time_before_scale_down=spec.idle_seconds_before_scale_down,
                    tier=spec.tier,
                )
                return self.ml.compute.begin_create_or_update(cluster).result()

        cluster = self._call(f"ensure compute {spec.name}", ensure)
        return ComputeState(
            name=cluster.name,
            instance_type=str(cluster.size),
            min_instances=int(cluster.min_instances or 0),
            max_instances=int(cluster.max_instances or 0),
            provisioning_state=_text(cluster.provisioning_state),
        )

    # ================================================================= jobs

    @staticmethod
    def command_line(spec: JobSpec) -> str:
        """``python <script> <args>`` with the port's placeholders turned into Azure ML's ``${{...}}``."""
        parts = ["python", spec.script]
        for arg in spec.args:
            value = arg.replace("{outputs}", f"${{{{outputs.{OUTPUT_NAME}}}}}")
            for name in spec.inputs:
                value = value.replace(f"{{inputs.{name}}}", f"${{{{inputs.{name}}}}}")
            # Azure substitutes ${{...}} textually before the shell runs, so quoting is safe around them.
            parts.append(value if value.startswith("${{") and value.endswith("}}") else shlex.quote(value))
        return " ".join(parts)

    def submit_job(self, spec: JobSpec) -> JobState:
        check_job_name(spec.name)
        if spec.instance_count < 1 or spec.processes_per_instance < 1 or spec.timeout_seconds < 1:
            raise InvalidRequestError(
                f"job {spec.name!r}: instance_count, processes_per_instance and timeout_seconds must be >= 1",
                "fix the JobSpec",
            )
        from azure.ai.ml import Input, Output, PyTorchDistribution, command
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        job = command(
            name=spec.name,
            display_name=spec.display_name or spec.name,
            experiment_name=spec.experiment_name,
            description=f"perennial {spec.kind} job",
            code=self._code(spec.code),
            command=self.command_line(spec),
            environment=spec.environment or self.training_environment,
            compute=spec.compute,
            inputs={name: Input(type=value.type, path=value.path) for name, value in spec.inputs.items()},
            # A fixed output path (rather than the service's default) so read_job_output can find the files.
            outputs={OUTPUT_NAME: Output(type="uri_folder", path=self._output_uri(spec.name))},
            instance_count=spec.instance_count,
            distribution=PyTorchDistribution(process_count_per_instance=spec.processes_per_instance)
            if spec.distribution == "pytorch"
            else None,
            environment_variables=dict(spec.environment_variables),
            tags={**spec.tags, "perennial.kind": spec.kind},
            timeout=spec.timeout_seconds,
        )
        # No resources.instance_type: it picks a Kubernetes or serverless instance type, while a job on an
        # AmlCompute cluster runs on the cluster's VM size (Bicep's computeVmSize, or ensure_compute's size).

        def submit() -> Any:
            try:
                return self.ml.jobs.get(spec.name)  # idempotent by name
            except ResourceNotFoundError:
                pass
            try:
                return self.ml.jobs.create_or_update(job, experiment_name=spec.experiment_name)
            except HttpResponseError as exc:
                if exc.status_code in (400, 409) and "exist" in _service_message(exc).lower():
                    return self.ml.jobs.get(spec.name)  # a concurrent submit won the race
                raise

        state = self._job_state(self._call(f"submit job {spec.name}", submit))
        logger.info("Azure ML job %s: %s", spec.name, state.status, extra={"job": spec.name})
        return state

    def _job_state(
        self, job: Any, error: str | None = None, preempted: bool = False, exit_code: int | None = None
    ) -> JobState:
        status = _text(job.status or "Unknown")
        context = getattr(job, "creation_context", None)
        return JobState(
            name=job.name,
            status=status,
            phase=job_phase(status, preempted),
            experiment_name=str(job.experiment_name or ""),
            outputs_uri=job_output_uri(job.name),
            error=error,
            preempted=preempted,
            exit_code=exit_code,
            created_at=getattr(context, "created_at", None),
            studio_url=getattr(job, "studio_url", None),
        )

    def _run_details(self, name: str) -> Any:
        # Run history (error, log files) is not in the job resource; the SDK reads it this way too (jobs.stream).
        return self.ml.jobs._runs_operations.get_run_details(name)

    def get_job(self, name: str) -> JobState:
        check_job_name(name)
        job = self._call(f"get job {name}", lambda: self.ml.jobs.get(name), not_found=("job", name))
        if _text(job.status) not in ("Failed", "NotResponding"):
            return self._job_state(job)
        error, preempted = f"job {name} failed; read job_logs or {getattr(job, 'studio_url', '')}", False
        try:
            details = self._call(f"job {name} run details", lambda: self._run_details(name))
            inner = getattr(getattr(details, "error", None), "error", None)
            if inner is not None and getattr(inner, "message", None):
                error = str(inner.message)
        except PlatformError:
            pass  # the status is what matters; the message is a courtesy
        preempted = _PREEMPTED.search(error) is not None
        code = _EXIT_CODE.search(error)
        return self._job_state(job, error=error, preempted=preempted, exit_code=int(code[1]) if code else None)

    def cancel_job(self, name: str) -> JobState:
        job = self.get_job(name)
        if job.terminal:
            return job
        self._call(f"cancel job {name}", lambda: self.ml.jobs.begin_cancel(name).result(), not_found=("job", name))
        return self.get_job(name)

    def job_logs(self, request: LogsRequest) -> str:
        from azure.core.exceptions import HttpResponseError
        from azure.core.rest import HttpRequest

        details = self._call(
            f"job {request.job_name} logs",
            lambda: self._run_details(request.job_name),
            not_found=("job", request.job_name),
        )
        texts = []
        for log_name, url in sorted((getattr(details, "log_files", None) or {}).items()):
            if "user_logs/" not in log_name and not log_name.startswith("std_log"):
                continue

            def fetch(url: str = url) -> str:
                # A SAS URL: no token. A pipeline does not raise for status: a storage error page (403, 404) would
                # come back as the log. Raised, _call retries a 5xx and reports a 403 / 404 in the storage's words.
                response = self._pipeline().run(HttpRequest("GET", url)).http_response
                if response.status_code >= 400:
                    words = " ".join(str(response.text()).split())[:300]
                    raise HttpResponseError(
                        message=f"{response.status_code} from the log's URL: {words}", response=response
                    )
                return str(response.text())

            texts.append(
                self._call(
                    f"download {log_name} of job {request.job_name}",
                    fetch,
                    not_found=("job log", f"{request.job_name}/{log_name}"),
                )
            )
        lines = "".join(texts).splitlines()
        if request.tail_lines is not None:
            lines = lines[-request.tail_lines :]
        return "\n".join(lines)

    def _output_prefix(self, job_name: str) -> str:
        return f"perennial/jobs/{job_name}/{OUTPUT_NAME}/"

    def _output_uri(self, job_name: str) -> str:
        return f"azureml://datastores/{self.outputs_datastore}/paths/{self._output_prefix(job_name)}"

    def _blob_service(self, account_url: str) -> Any:
        if self._blob_service_factory is not None:
            return self._blob_service_factory(account_url)
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(account_url, credential=self.credential)

    def read_job_output(self, request: JobOutputRequest) -> bytes:
        relative = check_output_path(request.path)
        job = self.get_job(request.job_name)
        if not job.terminal:
            raise InvalidRequestError(
                f"job {request.job_name!r} is {job.status}", "read outputs once the job has ended"
            )
        account_url, container_name = self._datastore_location(self.outputs_datastore)
        blob_name = self._output_prefix(request.job_name) + relative
        from azure.core.exceptions import ResourceNotFoundError

        def download() -> bytes:
            service = self._blob_service(account_url)
            try:
                return bytes(service.get_blob_client(container_name, blob_name).download_blob().readall())
            except ResourceNotFoundError:
                raise NotFoundError(
                    "job output", f"{request.job_name}/{relative}", "check what the script writes to its output folder"
                ) from None

        return self._call(f"read {blob_name}", download)

    # ================================================================= models

    @staticmethod
    def _model_version(model: Any) -> ModelVersion:
        context = getattr(model, "creation_context", None)
        return ModelVersion(
            name=model.name,
            version=str(model.version),
            path=str(model.path),
            tags=dict(model.tags or {}),
            properties=dict(model.properties or {}),
            description=str(model.description or ""),
            created_at=getattr(context, "created_at", None),
            job_name=getattr(model, "job_name", None),
        )

    def register_model(self, request: ModelRegistration) -> ModelVersion:
        check_model_name(request.name)
        job = self.get_job(request.job_name)
        if job.phase != "completed":
            raise InvalidRequestError(
                f"job {request.job_name!r} is {job.status}, so it has no outputs to register",
                "register a model only from a Completed job",
            )
        from azure.ai.ml.entities import Model

        model = Model(
            name=request.name,
            path=request.path or job_output_uri(request.job_name),
            type="custom_model",
            description=request.description,
            tags=dict(request.tags),
            properties={**request.properties, "perennial.job": request.job_name},
        )
        # No version: the SDK reads the latest and PUTs the next one.
        return self._model_version(
            self._call(f"register model {request.name}", lambda: self.ml.models.create_or_update(model))
        )

    def get_model(self, name: str, version: str) -> ModelVersion:
        model = self._call(
            f"get model {name}:{version}",
            lambda: self.ml.models.get(name, version=version),
            not_found=("model", f"{name}:{version}"),
        )
        return self._model_version(model)

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        from azure.core.exceptions import ResourceNotFoundError

        def versions() -> list[Any]:
            try:
                return list(self.ml.models.list(name=name))
            except ResourceNotFoundError:
                return []

        found = [self._model_version(m) for m in self._call(f"list model {name}", versions)]
        return sorted(found, key=lambda m: (len(m.version), m.version))

    def latest_model(self, name: str) -> ModelVersion | None:
        versions = self.list_model_versions(name)
        return versions[-1] if versions else None

    def champion(self, name: str) -> ModelVersion | None:
        champions = [v for v in self.list_model_versions(name) if v.is_champion]
        return champions[-1] if champions else None

    def _retag(self, name: str, version: str, change: Callable[[dict[str, str]], dict[str, str]]) -> ModelVersion:
        def update() -> Any:
            model = self.ml.models.get(name, version=version)
            model.tags = change(dict(model.tags or {}))
            return self.ml.models.create_or_update(model)

        return self._model_version(
            self._call(f"tag model {name}:{version}", update, not_found=("model", f"{name}:{version}"))
        )

    def set_champion(self, name: str, version: str) -> ModelVersion:
        champion = self._retag(name, version, lambda tags: {**tags, CHAMPION_TAG: "true"})
        for other in self.list_model_versions(name):
            if other.version != version and other.is_champion:
                self._retag(name, other.version, lambda tags: {k: v for k, v in tags.items() if k != CHAMPION_TAG})
        return champion

    # ================================================================= endpoints

    def _endpoint_state(self, endpoint: Any) -> EndpointState:
        return EndpointState(
            name=endpoint.name,
            scoring_uri=str(endpoint.scoring_uri or ""),
            traffic=Traffic(
                live={k: int(v) for k, v in (endpoint.traffic or {}).items() if int(v) > 0},
                mirror={k: int(v) for k, v in (endpoint.mirror_traffic or {}).items() if int(v) > 0},
            ),
            provisioning_state=_text(endpoint.provisioning_state),
            auth_mode=str(endpoint.auth_mode or "key"),
        )

    def ensure_endpoint(self, spec: EndpointSpec) -> EndpointState:
        check_resource_name("endpoint", spec.name)
        from azure.ai.ml.entities import ManagedOnlineEndpoint
        from azure.core.exceptions import ResourceNotFoundError

        def ensure() -> Any:
            try:
                return self.ml.online_endpoints.get(spec.name)
            except ResourceNotFoundError:
                endpoint = ManagedOnlineEndpoint(
                    # Entra ID tokens: no endpoint key to leak or rotate. (The app, not Bicep, creates endpoints.)
                    name=spec.name,
                    auth_mode="aad_token",
                    description=spec.description,
                    tags=dict(spec.tags),
                )
                poller = self.ml.online_endpoints.begin_create_or_update(endpoint)
                # Bounded: an activity that outlived the host's function timeout would be killed mid-call.
                poller.wait(self.endpoint_wait_seconds)
                if not poller.done():
                    raise _StillProvisioning(f"endpoint {spec.name} is still being created") from None
                return poller.result()

        try:
            return self._endpoint_state(self._call(f"ensure endpoint {spec.name}", ensure))
        except _StillProvisioning as exc:
            raise PlatformError(
                f"{exc} after {self.endpoint_wait_seconds:.0f} s",
                "Azure ML is slow to create it: the next rollout finds it ready (it is not created twice)",
            ) from None

    def get_endpoint(self, name: str) -> EndpointState:
        endpoint = self._call(
            f"get endpoint {name}", lambda: self.ml.online_endpoints.get(name), not_found=("endpoint", name)
        )
        return self._endpoint_state(endpoint)

    def delete_endpoint(self, name: str) -> None:
        self._call(
            f"delete endpoint {name}",
            lambda: self.ml.online_endpoints.begin_delete(name=name).result(),
            not_found=("endpoint", name),
        )

    # ================================================================= deployments

    @staticmethod
    def _probe(probe: ProbeSpec) -> Any:
        from azure.ai.ml.entities import ProbeSettings

        return ProbeSettings(
            initial_delay=probe.initial_delay_seconds,
            period=probe.period_seconds,
            timeout=probe.timeout_seconds,
            failure_threshold=probe.failure_threshold,
            success_threshold=probe.success_threshold,
        )

    @staticmethod
    def _deployment_state(deployment: Any) -> DeploymentState:
        model = str(deployment.model or "")
        # The service returns the model as an ARM id: .../models/<name>/versions/<version>
        parts = model.rstrip("/").split("/")
        if "versions" in parts:
            index = parts.index("versions")
            name, version = parts[index - 1], parts[index + 1]
        else:
            _, name, version = ([*model.split(":"), "", ""])[:3]
        scale = getattr(deployment, "instance_count", None)
        return DeploymentState(
            endpoint=str(deployment.endpoint_name),
            name=str(deployment.name),
            model_name=name,
            model_version=version,
            instance_type=str(deployment.instance_type or ""),
            instance_count=int(scale or 0),
            provisioning_state=_text(deployment.provisioning_state),
            tags={str(k): str(v) for k, v in (getattr(deployment, "tags", None) or {}).items()},
        )

    def create_or_update_deployment(self, spec: DeploymentSpec) -> DeploymentState:
        check_resource_name("endpoint", spec.endpoint)
        check_resource_name("deployment", spec.name)
        if spec.instance_count < 1:
            raise InvalidRequestError(f"deployment {spec.name!r}: instance_count {spec.instance_count}", "use >= 1")
        with contextlib.suppress(NotFoundError):
            existing = self.get_deployment(DeploymentRef(spec.endpoint, spec.name))
            if existing.provisioning_state == "Deleting":  # a PUT now would meet the deletion (Azure: a 409)
                raise TransientPlatformError(
                    f"deployment {spec.name!r} on {spec.endpoint!r} is still being deleted",
                    "Azure ML deletes it within minutes: roll the version out again then",
                )
            if existing.serves(spec) and (existing.provisioning or existing.provisioning_state == "Succeeded"):
                # Not sent again: a PUT starts another provisioning of many minutes (and Azure refuses one while
                # the last is in progress). A retried activity finds the deployment its first attempt started.
                return existing
        from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment

        deployment = ManagedOnlineDeployment(
            data_collector=self._data_collector(),
            name=spec.name,
            endpoint_name=spec.endpoint,
            model=f"azureml:{spec.model_name}:{spec.model_version}",
            environment=spec.environment or self.scoring_environment,
            code_configuration=CodeConfiguration(code=self._code(spec.code), scoring_script=spec.scoring_script),
            instance_type=spec.instance_type,
            instance_count=spec.instance_count,
            liveness_probe=self._probe(spec.liveness_probe),
            readiness_probe=self._probe(spec.readiness_probe),
            environment_variables=dict(spec.environment_variables),
            tags=dict(spec.tags),
        )

        def start() -> Any:
            poller = self.ml.online_deployments.begin_create_or_update(deployment)
            # Provisioning takes many minutes, past the host's function timeout: wait a little (a quick update
            # ends here), then leave the poll to the orchestrator (get_deployment on durable timers).
            poller.wait(self.deployment_wait_seconds)
            return poller.result() if poller.done() else None

        try:
            result = self._call(f"deploy {spec.endpoint}/{spec.name}", start)
        except NotFoundError as exc:
            cause = exc.__cause__
            request = getattr(getattr(cause, "response", None), "request", None)
            if isinstance(cause, Exception) and request is not None and request.method == "PUT":
                # The SDK reads the endpoint first, so a 404 on the PUT itself is something the deployment
                # refers to (the model version, its code or environment), not the endpoint.
                raise NotFoundError(
                    "model version",
                    f"{spec.model_name}:{spec.model_version}",
                    f"Azure ML said: {_service_message(cause)}; register it (and its code and environment) first",
                ) from cause
            raise NotFoundError("endpoint", spec.endpoint) from cause
        except PlatformError as exc:
            if isinstance(exc, InvalidRequestError | TransientPlatformError):
                raise
            raise DeploymentFailedError(
                f"deployment {spec.name!r} on {spec.endpoint!r} failed: {exc.message}",
                "read deployment_logs for the scoring script's output; fix the model or score.py and redeploy",
            ) from exc
        if result is None:  # still provisioning
            return self.get_deployment(DeploymentRef(spec.endpoint, spec.name))
        state = self._deployment_state(result)
        if state.provisioning_state == "Failed":
            raise DeploymentFailedError(
                f"deployment {spec.name!r} on {spec.endpoint!r} ended Failed", "read deployment_logs and redeploy"
            )
        return state

    def _data_collector(self) -> Any:
        """Collect score.py's ``model_inputs`` / ``model_outputs`` to the default path, rolled per hour."""
        if not self.collect_data:
            return None
        from azure.ai.ml.entities import DataCollector, DeploymentCollection

        return DataCollector(
            collections={
                INPUTS_COLLECTION: DeploymentCollection(enabled="true"),
                OUTPUTS_COLLECTION: DeploymentCollection(enabled="true"),
            },
            rolling_rate="Hour",
            sampling_rate=1.0,
        )

    def get_deployment(self, ref: DeploymentRef) -> DeploymentState:
        deployment = self._call(
            f"get deployment {ref.endpoint}/{ref.name}",
            lambda: self.ml.online_deployments.get(name=ref.name, endpoint_name=ref.endpoint),
            not_found=("deployment", f"{ref.endpoint}/{ref.name}"),
        )
        return self._deployment_state(deployment)

    def list_deployments(self, endpoint: str) -> list[DeploymentState]:
        found = self._call(
            f"list deployments of {endpoint}",
            lambda: list(self.ml.online_deployments.list(endpoint_name=endpoint)),
            not_found=("endpoint", endpoint),
        )
        return sorted((self._deployment_state(d) for d in found), key=lambda d: d.name)

    def delete_deployment(self, ref: DeploymentRef) -> None:
        check_deletable(ref.name, self.get_traffic(ref.endpoint))

        def delete() -> bool:
            poller = self.ml.online_deployments.begin_delete(name=ref.name, endpoint_name=ref.endpoint)
            poller.wait(self.deployment_wait_seconds)  # bounded, as deploying is; Azure goes on deleting
            if not poller.done():
                return False
            poller.result()  # raises what the deletion failed with
            return True

        deleted = self._call(
            f"delete deployment {ref.endpoint}/{ref.name}",
            delete,
            not_found=("deployment", f"{ref.endpoint}/{ref.name}"),
        )
        if not deleted:
            logger.info("deployment %s/%s takes no traffic and is being deleted", ref.endpoint, ref.name)

    # ================================================================= traffic

    def get_traffic(self, endpoint: str) -> Traffic:
        return self.get_endpoint(endpoint).traffic

    def set_traffic(self, update: TrafficUpdate) -> Traffic:
        check_traffic_shape(update.traffic)  # before any request, even a read
        deployments = [d.name for d in self.list_deployments(update.endpoint)]
        # Before any write.
        traffic = check_traffic(update.traffic, deployments, allow_no_live_traffic=update.allow_no_live_traffic)

        logger.info("endpoint %s traffic: live %s mirror %s", update.endpoint, dict(traffic.live), dict(traffic.mirror))

        def put() -> Any:
            endpoint = self.ml.online_endpoints.get(update.endpoint)
            # An endpoint taken dark names its deployments at 0 (an empty map could read as "unchanged").
            endpoint.traffic = dict(traffic.live) or dict.fromkeys(deployments, 0)
            endpoint.mirror_traffic = dict(traffic.mirror)
            return self.ml.online_endpoints.begin_create_or_update(endpoint).result()

        return self._endpoint_state(
            self._call(f"set traffic on {update.endpoint}", put, not_found=("endpoint", update.endpoint))
        ).traffic

    # ================================================================= scoring

    def invoke(self, request: InvokeRequest) -> InvokeResult:
        from azure.core.exceptions import HttpResponseError
        from azure.core.rest import HttpRequest

        answered: list[tuple[Any, float]] = []  # the scoring answer of the latest attempt, if it got one

        def post() -> tuple[Any, float]:
            answered.clear()
            endpoint = self.ml.online_endpoints.get(request.endpoint)
            entra_id = str(endpoint.auth_mode or "").lower() == "aad_token"
            headers = {"Content-Type": "application/json"}  # a fresh dict per call, never shared
            if request.deployment:
                headers[DEPLOYMENT_HEADER] = request.deployment  # else the endpoint's traffic split decides
            if not entra_id:  # a key or AML-token endpoint (not one ensure_endpoint made): its own secret
                keys = self.ml.online_endpoints.get_keys(request.endpoint)
                headers["Authorization"] = f"Bearer {getattr(keys, 'primary_key', None) or keys.access_token}"
            started = time.perf_counter()
            # Not online_endpoints.invoke: it writes the pin into a dict the SDK shares module-wide (one pinned call
            # pins every later one; threads swap pins), raises MlException on a non-JSON error body, drops timeouts.
            response = (
                self._pipeline(SCORING_SCOPE if entra_id else None)
                .run(
                    HttpRequest(
                        "POST", endpoint.scoring_uri, headers=headers, content=json.dumps(dict(request.payload))
                    ),
                    connection_timeout=request.timeout_seconds,
                    read_timeout=request.timeout_seconds,
                )
                .http_response
            )
            answered.append((response, (time.perf_counter() - started) * 1000.0))
            if response.status_code in SCORING_RETRY_STATUS:
                raise HttpResponseError(response=response)  # retried by _call; the last one is returned below
            return answered[0]

        try:
            response, latency_ms = self._call(
                f"invoke {request.endpoint}", post, not_found=("endpoint", request.endpoint)
            )
        except TransientPlatformError:
            # Still a gateway / throttling status after the retries: that status is the answer. A connection
            # error, a timeout or an ARM error of the endpoint read has no scoring answer and stays an error.
            if not answered:
                raise
            response, latency_ms = answered[0]
        text = response.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text  # a gateway's plain-text error page, say
        return InvokeResult(
            status_code=int(response.status_code),
            body=body,
            latency_ms=latency_ms,
            deployment=response.headers.get(DEPLOYMENT_HEADER) or request.deployment,
        )

    def deployment_logs(self, request: DeploymentLogsRequest) -> str:
        text = self._call(
            f"logs of {request.endpoint}/{request.deployment}",
            lambda: self.ml.online_deployments.get_logs(
                name=request.deployment, endpoint_name=request.endpoint, lines=request.lines
            ),
            not_found=("deployment", f"{request.endpoint}/{request.deployment}"),
        )
        return str(text)

    # ================================================================= health metrics

    def endpoint_resource_id(self, endpoint: str) -> str:
        return f"{self.workspace_id}/onlineEndpoints/{endpoint}"

    def location(self) -> str:
        if self._location is None:
            workspace = self._call("get workspace", lambda: self.ml.workspaces.get(self.workspace_name))
            self._location = str(workspace.location)
        return self._location

    def metrics_client(self) -> Any:
        from azure.monitor.querymetrics import MetricsClient

        kwargs = {k: v for k, v in self.client_kwargs.items() if k in ("transport", "retry_total")}
        return MetricsClient(metrics_endpoint(self.location()), self.credential, **kwargs)

    def deployment_metrics(self, query: MetricsQuery) -> DeploymentMetrics:
        check_resource_name("endpoint", query.endpoint)
        check_resource_name("deployment", query.deployment)
        client = self.metrics_client()
        resource = self.endpoint_resource_id(query.endpoint)
        return self._call(
            f"metrics of {query.endpoint}/{query.deployment}", lambda: query_deployment_metrics(client, resource, query)
        )

    # ================================================================= scoring records (data collector)

    def _datastore_location(self, name: str) -> tuple[str, str]:
        """(blob account URL, container) of a workspace datastore."""
        datastore = self._call(
            f"get datastore {name}", lambda: self.ml.datastores.get(name), not_found=("datastore", name)
        )
        account_url = f"{datastore.protocol or 'https'}://{datastore.account_name}.blob.{datastore.endpoint}"
        return account_url, str(datastore.container_name)

    def scoring_records(self, query: ScoringQuery) -> ScoringRecords:
        """What the data collector logged for one deployment in the window: score.py's ``model_inputs`` and
        ``model_outputs`` under ``modelDataCollector/<endpoint>/<deployment>/<collection>/<yyyy>/<MM>/<dd>/<HH>/``
        on the workspace blob datastore, joined per request id (score.py's ``request_id`` column, else the
        event's correlation id). Only blobs modified since ``start`` in day folders the window touches are read,
        line by line. The collector does not mark mirrored copies, so ``include_mirrored`` changes nothing."""
        check_resource_name("endpoint", query.endpoint)
        check_resource_name("deployment", query.deployment)
        account_url, container_name = self._datastore_location(self.collector_datastore)
        collections = [OUTPUTS_COLLECTION, *([INPUTS_COLLECTION] if query.include_inputs else [])]

        def read() -> CollectedRequests:
            collected = CollectedRequests(query.start, query.end, query.limit)
            container = self._blob_service(account_url).get_container_client(container_name)
            for collection in collections:
                for prefix in collector_prefixes(query.endpoint, query.deployment, collection, query.start, query.end):
                    for blob in container.list_blobs(name_starts_with=prefix):
                        if not _may_hold(blob, prefix, query):
                            continue
                        for line in _lines(container.get_blob_client(blob.name).download_blob().chunks()):
                            events = parse_collector_line(line)
                            if collection == INPUTS_COLLECTION:
                                collected.add_inputs(events)
                            else:
                                collected.add_outputs(events)
            return collected

        collected = self._call(
            f"read the data collector's records of {query.endpoint}/{query.deployment}",
            read,
            not_found=("datastore container", f"{self.collector_datastore}/{container_name}"),
        )
        return ScoringRecords(
            endpoint=query.endpoint,
            deployment=query.deployment,
            start=query.start,
            end=query.end,
            records=collected.records(query.deployment, query.include_inputs),
            truncated=collected.truncated,
        )


def _may_hold(blob: Any, prefix: str, query: ScoringQuery) -> bool:
    """False when a collector blob cannot hold events of the window: last written before it started, or in an
    hour folder that begins at or after its end."""
    modified = getattr(blob, "last_modified", None)
    if modified is not None and modified < query.start:
        return False
    hour = str(blob.name)[len(prefix) :].split("/", 1)[0]
    if hour.isdigit() and len(hour) == 2:
        day = prefix.rstrip("/").rsplit("/", 3)[-3:]
        with contextlib.suppress(ValueError):
            folder = datetime(int(day[0]), int(day[1]), int(day[2]), int(hour), tzinfo=UTC)
            return folder < query.end
    return True


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The lines of a blob streamed chunk by chunk (a JSONL file can be larger than memory wants)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending
