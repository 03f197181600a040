"""The local ML platform: Azure ML's behaviour where Perennial depends on it, on one laptop.

All state is files under ``<state_dir>/ml/`` (see :mod:`shared.platform.localstore`), so any
process can drive it: the durable activities in devhost's thread pool, a test, the CLI, or a new
process after a restart. The moving parts are processes of ``devhost/mlservice/``, started
detached so they outlive whoever started them, as cloud resources outlive a Functions host:

- each job is a runner process (:mod:`devhost.mlservice.jobrunner`) that queues for node slots,
  runs ``python <code>/<script> <args>`` and writes Azure ML's status strings to ``state.json``;
- each online endpoint is a router process (:mod:`devhost.mlservice.router`): a real HTTP
  server on 127.0.0.1 with key auth, live split + mirror and per-deployment metrics, and one
  scoring worker per deployment.

This module never imports devhost (the app must not); it starts those modules with
``python -m``. Local-only extras (not in the Protocol): :meth:`LocalPlatform.inject_faults`,
:meth:`LocalPlatform.endpoint_key`, :meth:`LocalPlatform.stop_endpoints`, :meth:`LocalPlatform.resume`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

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
    LatencyWindow,
    LogsRequest,
    MetricsQuery,
    ModelRegistration,
    ModelVersion,
    NotFoundError,
    PlatformError,
    ScoringQuery,
    ScoringRecord,
    ScoringRecords,
    Traffic,
    TrafficUpdate,
    check_job_name,
    check_model_name,
    check_output_path,
    check_resource_name,
    job_output_uri,
    job_phase,
)
from shared.platform.localstore import (
    LocalLayout,
    deployment_spec_from_dict,
    deployment_spec_to_dict,
    is_held,
    iso,
    job_spec_from_dict,
    job_spec_to_dict,
    locked,
    parse_iso,
    read_json,
    resolve_input_path,
    utcnow,
    write_json,
)
from shared.platform.scoring import RequestSample, record_from_router_line
from shared.platform.traffic import check_deletable, check_traffic, check_traffic_shape

REPO_ROOT = Path(__file__).resolve().parents[2]
logger = logging.getLogger(__name__)
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled", "NotResponding", "Paused"})
PROCESS_LOST = (
    "process lost: the job's runner process is gone (the machine restarted or it was killed); "
    "resubmit under a new name, with --resume auto to continue from its last checkpoint"
)


@dataclass(frozen=True)
class FaultSpec:
    """Faults a local deployment injects (tests of the health gates and rollback)."""

    error_rate: float = 0.0
    added_latency_ms: float = 0.0
    crash_on_load: bool = False
    flip_rate: float = 0.0  # share of binary predictions answering the other class (a silently worse model)


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]) of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class LocalPlatform:
    """The local adapter of :class:`shared.platform.MLPlatform`."""

    def __init__(
        self,
        state_dir: str | Path = ".perennial",
        *,
        code_root: str | Path = REPO_ROOT,
        python: str = sys.executable,
        start_timeout: float = 30.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.layout = LocalLayout(self.state_dir)
        self.code_root = Path(code_root).resolve()
        self.python = python
        self.start_timeout = start_timeout

    # ================================================================= compute

    def ensure_compute(self, spec: ComputeSpec) -> ComputeState:
        check_resource_name("compute", spec.name, max_length=24)
        if spec.max_instances < 1 or spec.min_instances < 0 or spec.min_instances > spec.max_instances:
            raise InvalidRequestError(
                f"compute {spec.name!r}: min {spec.min_instances} / max {spec.max_instances} instances",
                "use 0 <= min_instances <= max_instances and max_instances >= 1",
            )
        existing = read_json(self.layout.compute_file(spec.name))
        if existing is not None:
            # As Azure ML: an existing cluster is used as it is (its VM size and scale), not updated.
            return self._compute_state(existing)
        document = {
            "name": spec.name,
            "instance_type": spec.instance_type,
            "min_instances": spec.min_instances,
            "max_instances": spec.max_instances,
            "tier": spec.tier,
            "provisioning_state": "Succeeded",
        }
        write_json(self.layout.compute_file(spec.name), document)
        return self._compute_state(document)

    @staticmethod
    def _compute_state(document: dict[str, Any]) -> ComputeState:
        return ComputeState(
            name=document["name"],
            instance_type=document["instance_type"],
            min_instances=int(document["min_instances"]),
            max_instances=int(document["max_instances"]),
            provisioning_state=document["provisioning_state"],
        )

    # ================================================================= jobs

    def submit_job(self, spec: JobSpec) -> JobState:
        check_job_name(spec.name)
        if spec.instance_count < 1 or spec.processes_per_instance < 1 or spec.timeout_seconds < 1:
            raise InvalidRequestError(
                f"job {spec.name!r}: instance_count, processes_per_instance and timeout_seconds must be >= 1",
                "fix the JobSpec",
            )
        with locked(self.layout.jobs_dir / f".{spec.name}.lock"):
            if self.layout.job_spec_file(spec.name).exists():
                return self.get_job(spec.name)  # idempotent by name
            compute = read_json(self.layout.compute_file(spec.compute))
            if compute is None:
                raise NotFoundError("compute", spec.compute, "call ensure_compute before submitting jobs to it")
            if spec.instance_count > int(compute["max_instances"]):
                raise InvalidRequestError(
                    f"job {spec.name!r} asks for {spec.instance_count} nodes; compute {spec.compute!r} has at most "
                    f"{compute['max_instances']}",
                    "lower instance_count or raise the cluster's max_instances",
                )
            code_dir = (self.code_root / spec.code).resolve()
            if not (code_dir / spec.script).is_file():
                raise InvalidRequestError(
                    f"job {spec.name!r}: script {spec.script!r} not found in {code_dir}", "check JobSpec.code/script"
                )
            self._check_placeholders(spec)
            write_json(
                self.layout.job_spec_file(spec.name),
                {"spec": job_spec_to_dict(spec), "code_dir": str(code_dir), "python": self.python},
            )
            write_json(self.layout.job_state_file(spec.name), {"status": "NotStarted", "created_at": iso(utcnow())})
            logger.info("local job %s submitted to %s", spec.name, spec.compute, extra={"job": spec.name})
            self._spawn("devhost.mlservice.jobrunner", [str(self.state_dir), spec.name], self.layout.job_dir(spec.name))
            # Wait for the runner to own the job, so "runner lock free" always means "runner gone".
            deadline = time.monotonic() + self.start_timeout
            while (read_json(self.layout.job_state_file(spec.name)) or {}).get("status") == "NotStarted":
                if time.monotonic() > deadline:
                    raise PlatformError(
                        f"the local job runner for {spec.name!r} did not start within {self.start_timeout}s",
                        f"see {self.layout.job_dir(spec.name) / 'runner.log'}",
                    )
                time.sleep(0.02)
        return self.get_job(spec.name)

    @staticmethod
    def _check_placeholders(spec: JobSpec) -> None:
        for arg in spec.args:
            start = arg.find("{inputs.")
            while start >= 0:
                end = arg.find("}", start)
                key = arg[start + len("{inputs.") : end]
                if key not in spec.inputs:
                    raise InvalidRequestError(
                        f"job {spec.name!r}: argument {arg!r} names input {key!r}, which is not in inputs",
                        f"add it to JobSpec.inputs (have: {', '.join(spec.inputs) or 'none'})",
                    )
                start = arg.find("{inputs.", end)

    def _spawn(self, module: str, args: list[str], log_dir: Path) -> subprocess.Popen[bytes]:
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        with open(log_dir / f"{module.rsplit('.', 1)[-1]}.log", "ab") as log:
            # Own session: a Ctrl-C or kill of the caller's process group does not reach it.
            return subprocess.Popen(
                [self.python, "-m", module, *args],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def get_job(self, name: str) -> JobState:
        document = read_json(self.layout.job_spec_file(name))
        state = read_json(self.layout.job_state_file(name))
        if document is None or state is None:
            raise NotFoundError("job", name, "check the job name; submit_job creates it")
        if state.get("status") not in TERMINAL_STATUSES and not is_held(self.layout.runner_lock(name)):
            state = read_json(self.layout.job_state_file(name)) or state  # it may have just finished
            if state.get("status") not in TERMINAL_STATUSES:
                state = {**state, "status": "Failed", "error": PROCESS_LOST, "ended_at": iso(utcnow())}
                write_json(self.layout.job_state_file(name), state)
        spec = job_spec_from_dict(document["spec"])
        status = str(state.get("status"))
        preempted = bool(state.get("preempted", False))
        return JobState(
            name=name,
            status=status,
            phase=job_phase(status, preempted),
            experiment_name=spec.experiment_name,
            outputs_uri=job_output_uri(name),
            error=state.get("error"),
            preempted=preempted,
            exit_code=state.get("exit_code"),
            created_at=parse_iso(state.get("created_at")),
            started_at=parse_iso(state.get("started_at")),
            ended_at=parse_iso(state.get("ended_at")),
            local_outputs_path=str(self.layout.job_outputs_dir(name)),
        )

    def list_jobs(self) -> list[JobState]:
        """Every local job (local only; handy for the CLI and demo)."""
        if not self.layout.jobs_dir.exists():
            return []
        return [self.get_job(p.name) for p in sorted(self.layout.jobs_dir.iterdir()) if (p / "job.json").exists()]

    def cancel_job(self, name: str) -> JobState:
        job = self.get_job(name)
        if job.terminal:
            return job
        self.layout.cancel_file(name).touch()
        pid = (read_json(self.layout.job_state_file(name)) or {}).get("runner_pid")
        if pid and is_held(self.layout.runner_lock(name)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        # Like Azure's cancel LRO, wait a little for the job to acknowledge; a script checkpointing on
        # SIGTERM may take longer, and the job then shows CancelRequested until it stops.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            job = self.get_job(name)
            if job.terminal:
                return job
            time.sleep(0.05)
        return self.get_job(name)

    def job_logs(self, request: LogsRequest) -> str:
        self.get_job(request.job_name)
        folder = self.layout.job_logs_dir(request.job_name)
        parts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(folder.glob("std_log*.txt"))]
        lines = "".join(parts).splitlines()
        if request.tail_lines is not None:
            lines = lines[-request.tail_lines :]
        return "\n".join(lines)

    def read_job_output(self, request: JobOutputRequest) -> bytes:
        relative = check_output_path(request.path)
        job = self.get_job(request.job_name)
        if not job.terminal:
            raise InvalidRequestError(
                f"job {request.job_name!r} is {job.status}", "read outputs once the job has ended"
            )
        try:
            return (self.layout.job_outputs_dir(request.job_name) / relative).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(
                "job output", f"{request.job_name}/{relative}", "check what the script writes"
            ) from None

    # ================================================================= models

    def _model_version(self, name: str, version: str) -> ModelVersion:
        document = read_json(self.layout.model_version_dir(name, version) / "model.json")
        if document is None:
            raise NotFoundError("model", f"{name}:{version}", "list the versions with list_model_versions")
        return ModelVersion(
            name=document["name"],
            version=document["version"],
            path=document["path"],
            tags=document.get("tags", {}),
            properties=document.get("properties", {}),
            description=document.get("description", ""),
            created_at=parse_iso(document.get("created_at")),
            job_name=document.get("job_name"),
        )

    def register_model(self, request: ModelRegistration) -> ModelVersion:
        check_model_name(request.name)
        job = self.get_job(request.job_name)
        if job.phase != "completed":
            raise InvalidRequestError(
                f"job {request.job_name!r} is {job.status}, so it has no outputs to register",
                "register a model only from a Completed job",
            )
        source = Path(resolve_input_path(self.layout, request.path or job_output_uri(request.job_name)))
        if not source.is_dir():
            raise NotFoundError("job output", str(source), "check ModelRegistration.path")
        model_dir = self.layout.model_dir(request.name)
        model_dir.mkdir(parents=True, exist_ok=True)
        with locked(model_dir / ".lock"):
            versions = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()]
            version = str(max(versions, default=0) + 1)
            staging = model_dir / f".staging-{version}"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(source, staging / OUTPUT_NAME)
            document = {
                "name": request.name,
                "version": version,
                "path": str(model_dir / version / OUTPUT_NAME),
                "tags": dict(request.tags),
                "properties": dict(request.properties),
                "description": request.description,
                "created_at": iso(utcnow()),
                "job_name": request.job_name,
            }
            write_json(staging / "model.json", document)
            os.replace(staging, model_dir / version)
        return self._model_version(request.name, version)

    def get_model(self, name: str, version: str) -> ModelVersion:
        return self._model_version(name, version)

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        model_dir = self.layout.model_dir(name)
        if not model_dir.exists():
            return []
        versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
        return [self._model_version(name, str(v)) for v in versions]

    def latest_model(self, name: str) -> ModelVersion | None:
        versions = self.list_model_versions(name)
        return versions[-1] if versions else None

    def champion(self, name: str) -> ModelVersion | None:
        champions = [v for v in self.list_model_versions(name) if v.is_champion]
        return champions[-1] if champions else None

    def _set_tags(self, version: ModelVersion, tags: dict[str, str]) -> None:
        path = self.layout.model_version_dir(version.name, version.version) / "model.json"
        with locked(self.layout.model_dir(version.name) / ".lock"):
            document = read_json(path) or {}
            document["tags"] = tags
            write_json(path, document)

    def set_champion(self, name: str, version: str) -> ModelVersion:
        target = self.get_model(name, version)
        self._set_tags(target, {**target.tags, CHAMPION_TAG: "true"})
        for other in self.list_model_versions(name):
            if other.version != version and other.is_champion:
                self._set_tags(other, {k: v for k, v in other.tags.items() if k != CHAMPION_TAG})
        return self.get_model(name, version)

    # ================================================================= endpoints

    def _endpoint_document(self, name: str) -> dict[str, Any]:
        document = read_json(self.layout.endpoint_file(name))
        if document is None:
            raise NotFoundError("endpoint", name, "an endpoint is created when its model's first version ships")
        return document

    def ensure_endpoint(self, spec: EndpointSpec) -> EndpointState:
        check_resource_name("endpoint", spec.name)
        with locked(self.layout.endpoint_dir(spec.name) / ".lock"):
            if read_json(self.layout.endpoint_file(spec.name)) is None:
                write_json(
                    self.layout.endpoint_file(spec.name),
                    {
                        "name": spec.name,
                        "key": secrets.token_urlsafe(32),
                        "traffic": {},
                        "mirror": {},
                        "description": spec.description,
                        "tags": dict(spec.tags),
                        "created_at": iso(utcnow()),
                    },
                )
        self._ensure_router(spec.name)
        return self.get_endpoint(spec.name)

    def get_endpoint(self, name: str) -> EndpointState:
        document = self._endpoint_document(name)
        router = read_json(self.layout.router_file(name)) or {}
        port = router.get("port")
        return EndpointState(
            name=name,
            scoring_uri=f"http://127.0.0.1:{port}/score" if port else "",
            traffic=Traffic(live=dict(document.get("traffic", {})), mirror=dict(document.get("mirror", {}))),
            provisioning_state="Succeeded",
        )

    def endpoint_key(self, name: str) -> str:
        """The endpoint's primary key (local only; Azure's is fetched with list_keys)."""
        return str(self._endpoint_document(name)["key"])

    def delete_endpoint(self, name: str) -> None:
        self._endpoint_document(name)
        self._stop_router(name)
        shutil.rmtree(self.layout.endpoint_dir(name), ignore_errors=True)

    def _router_port(self, name: str) -> int | None:
        info = read_json(self.layout.router_file(name)) or {}
        if not is_held(self.layout.router_lock(name)) or not info.get("port"):
            return None
        try:
            conn = http.client.HTTPConnection("127.0.0.1", int(info["port"]), timeout=2)
            conn.request("GET", "/__perennial/health")
            body = json.loads(conn.getresponse().read() or b"{}")
            conn.close()
        except (OSError, ValueError):
            return None
        return int(info["port"]) if body.get("pid") == info.get("pid") else None

    def _ensure_router(self, name: str) -> int:
        """The endpoint's router port, starting the router if none is alive (e.g. after a restart)."""
        port = self._router_port(name)
        if port is not None:
            return port
        with locked(self.layout.router_start_lock(name), timeout=self.start_timeout + 130):
            port = self._router_port(name)
            if port is not None:
                return port
            router = self._spawn(
                "devhost.mlservice.router", [str(self.state_dir), name], self.layout.endpoint_dir(name)
            )
            deadline = time.monotonic() + self.start_timeout + 120  # the router loads every deployment first
            while time.monotonic() < deadline and router.poll() is None:
                port = self._router_port(name)
                if port is not None:
                    return port
                time.sleep(0.05)
            port = self._router_port(name)  # it may have exited because another router already serves
            if port is not None:
                return port
        raise PlatformError(
            f"the local scoring server for endpoint {name!r} did not start: {self._router_log_tail(name)}",
            f"see {self.layout.endpoint_dir(name) / 'router.log'}",
        )

    def _router_log_tail(self, name: str) -> str:
        try:
            text = (self.layout.endpoint_dir(name) / "router.log").read_text(errors="replace")
        except FileNotFoundError:
            return "no log"
        return " | ".join(text.strip().splitlines()[-3:])

    def _stop_router(self, name: str) -> None:
        info = read_json(self.layout.router_file(name)) or {}
        if info.get("pid") and is_held(self.layout.router_lock(name)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(info["pid"]), signal.SIGTERM)
            deadline = time.monotonic() + 10
            while is_held(self.layout.router_lock(name)) and time.monotonic() < deadline:
                time.sleep(0.05)
            if is_held(self.layout.router_lock(name)):  # stuck: its workers exit by themselves once it is gone
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(info["pid"]), signal.SIGKILL)

    def stop_endpoints(self) -> None:
        """Stop every local endpoint's server (devhost shutdown, test teardown). State stays; resume() restarts."""
        root = self.layout.root / "endpoints"
        for folder in sorted(root.iterdir()) if root.exists() else []:
            self._stop_router(folder.name)

    def resume(self) -> list[str]:
        """Start the servers of every endpoint on disk (after a restart); returns their names."""
        root = self.layout.root / "endpoints"
        names = [p.name for p in sorted(root.iterdir()) if (p / "endpoint.json").exists()] if root.exists() else []
        for name in names:
            self._ensure_router(name)
        return names

    def _admin(self, endpoint: str, path: str, body: dict[str, Any], timeout: float = 300.0) -> Any:
        port = self._ensure_router(endpoint)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request(
                "POST",
                f"/__perennial/{path}",
                body=json.dumps(body),
                headers={"Authorization": f"Bearer {self.endpoint_key(endpoint)}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise PlatformError(f"local endpoint {endpoint!r} refused {path}: {data[:300]!r}", "see its router.log")
        return json.loads(data)

    # ================================================================= deployments

    def create_or_update_deployment(self, spec: DeploymentSpec) -> DeploymentState:
        check_resource_name("deployment", spec.name)
        if spec.instance_count < 1:
            raise InvalidRequestError(f"deployment {spec.name!r}: instance_count {spec.instance_count}", "use >= 1")
        self._endpoint_document(spec.endpoint)
        model = self.get_model(spec.model_name, spec.model_version)
        script = (self.code_root / spec.code / spec.scoring_script).resolve()
        if not script.is_file():
            raise InvalidRequestError(f"scoring script {script} not found", "check DeploymentSpec.code/scoring_script")
        path = self.layout.deployment_file(spec.endpoint, spec.name)
        previous = read_json(path) or {}
        write_json(
            path,
            {
                "spec": deployment_spec_to_dict(spec),
                "generation": int(previous.get("generation", 0)) + 1,
                # Azure sets AZUREML_MODEL_DIR to the model's folder; the registered folder sits inside it.
                "model_dir": str(Path(model.path).parent),
                "script": str(script),
                "cwd": str(script.parent),
                "python": self.python,
            },
        )
        status = self._admin(spec.endpoint, "sync", {"deployment": spec.name}).get(spec.name, {})
        state = self.get_deployment(DeploymentRef(spec.endpoint, spec.name))
        if status.get("provisioning_state") != "Succeeded":
            raise DeploymentFailedError(
                f"deployment {spec.name!r} on {spec.endpoint!r} failed: {status.get('error')}",
                "read deployment_logs for the scoring script's output; fix the model or score.py and redeploy",
            )
        return state

    def get_deployment(self, ref: DeploymentRef) -> DeploymentState:
        document = read_json(self.layout.deployment_file(ref.endpoint, ref.name))
        if document is None:
            raise NotFoundError("deployment", f"{ref.endpoint}/{ref.name}")
        spec = deployment_spec_from_dict(document["spec"])
        status = read_json(self.layout.deployment_status_file(ref.endpoint, ref.name)) or {}
        if status.get("generation") != document.get("generation"):
            status = {"provisioning_state": "Updating" if status else "Creating", "error": None}
        return DeploymentState(
            endpoint=ref.endpoint,
            name=ref.name,
            model_name=spec.model_name,
            model_version=spec.model_version,
            instance_type=spec.instance_type,
            instance_count=spec.instance_count,
            provisioning_state=str(status.get("provisioning_state")),
            error=status.get("error"),
            tags=dict(spec.tags),
        )

    def _deployment_names(self, endpoint: str) -> list[str]:
        folder = self.layout.endpoint_dir(endpoint) / "deployments"
        if not folder.exists():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if p.name.count(".") == 1)

    def list_deployments(self, endpoint: str) -> list[DeploymentState]:
        self._endpoint_document(endpoint)
        return [self.get_deployment(DeploymentRef(endpoint, n)) for n in self._deployment_names(endpoint)]

    def delete_deployment(self, ref: DeploymentRef) -> None:
        check_deletable(ref.name, self.get_traffic(ref.endpoint))
        if not self.layout.deployment_file(ref.endpoint, ref.name).exists():
            raise NotFoundError("deployment", f"{ref.endpoint}/{ref.name}")
        for path in (
            self.layout.deployment_file(ref.endpoint, ref.name),
            self.layout.deployment_status_file(ref.endpoint, ref.name),
            self.layout.faults_file(ref.endpoint, ref.name),
        ):
            path.unlink(missing_ok=True)
        self._admin(ref.endpoint, "sync", {})

    def inject_faults(self, ref: DeploymentRef, faults: FaultSpec) -> None:
        """Local only: make a deployment fail some requests, answer slowly, or crash when (re)loaded."""
        write_json(
            self.layout.faults_file(ref.endpoint, ref.name),
            {
                "error_rate": faults.error_rate,
                "added_latency_ms": faults.added_latency_ms,
                "crash_on_load": faults.crash_on_load,
                "flip_rate": faults.flip_rate,
            },
        )

    # ================================================================= traffic

    def get_traffic(self, endpoint: str) -> Traffic:
        return self.get_endpoint(endpoint).traffic

    def set_traffic(self, update: TrafficUpdate) -> Traffic:
        check_traffic_shape(update.traffic)
        with locked(self.layout.endpoint_dir(update.endpoint) / ".lock"):
            document = self._endpoint_document(update.endpoint)
            traffic = check_traffic(
                update.traffic,
                self._deployment_names(update.endpoint),
                allow_no_live_traffic=update.allow_no_live_traffic,
            )
            document["traffic"] = dict(traffic.live)
            document["mirror"] = dict(traffic.mirror)
            write_json(self.layout.endpoint_file(update.endpoint), document)
            logger.info(
                "local endpoint %s traffic: live %s mirror %s",
                update.endpoint,
                dict(traffic.live),
                dict(traffic.mirror),
            )
        return self.get_traffic(update.endpoint)

    # ================================================================= scoring

    def invoke(self, request: InvokeRequest) -> InvokeResult:
        self._endpoint_document(request.endpoint)
        port = self._ensure_router(request.endpoint)
        headers = {"Authorization": f"Bearer {self.endpoint_key(request.endpoint)}", "Content-Type": "application/json"}
        if request.deployment:
            headers["azureml-model-deployment"] = request.deployment
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=request.timeout_seconds)
        try:
            conn.request("POST", "/score", body=json.dumps(request.payload), headers=headers)
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            raise PlatformError(f"endpoint {request.endpoint!r} did not answer: {exc}", "check its router.log") from exc
        finally:
            conn.close()
        try:
            body: Any = json.loads(data)
        except ValueError:
            body = data.decode("utf-8", errors="replace")
        return InvokeResult(
            status_code=response.status,
            body=body,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            deployment=response.getheader("azureml-model-deployment"),
        )

    def scoring_address(self, endpoint: str) -> tuple[str, str]:
        """(scoring URI, key) for clients that call the endpoint directly, as they would in Azure."""
        port = self._ensure_router(endpoint)
        return f"http://127.0.0.1:{port}/score", self.endpoint_key(endpoint)

    def deployment_logs(self, request: DeploymentLogsRequest) -> str:
        self.get_deployment(DeploymentRef(request.endpoint, request.deployment))
        try:
            text = self.layout.deployment_log(request.endpoint, request.deployment).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-request.lines :])

    def _router_lines(
        self, endpoint: str, deployment: str, start: datetime, end: datetime, include_mirrored: bool
    ) -> Iterator[dict[str, Any]]:
        """The router's per-request lines of one deployment scored in ``[start, end)``, oldest first (mirrored
        requests only when asked). No file yet (a deployment that never served) yields nothing."""
        low, high = start.timestamp(), end.timestamp()
        with (
            contextlib.suppress(FileNotFoundError),
            open(self.layout.metrics_file(endpoint, deployment), encoding="utf-8") as handle,
        ):
            for line in handle:
                try:
                    sample = json.loads(line)
                    scored_at = float(sample["t"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line being written right now
                if low <= scored_at < high and (include_mirrored or not sample.get("mirror")):
                    yield sample

    def deployment_metrics(self, query: MetricsQuery) -> DeploymentMetrics:
        """Health from the router's per-request lines. ``p95_windows``: the query window cut into 60 slices
        (each at least 50 ms, at most a minute like Azure Monitor's) and the p95 of every slice with requests.
        Sixty give a 30-minute bake 30-second windows, and the few seconds of real time in which the end-to-end
        tests and the demo serve a bake's traffic slices of 50-100 ms: enough windows for the canary's paired
        test either way. The slices depend on ``start`` and ``end`` alone, so the challenger's and the
        champion's line up."""
        self.get_deployment(DeploymentRef(query.endpoint, query.deployment))
        latencies: list[float] = []
        classes: list[str] = []
        errors = 0
        width = min(max((query.end - query.start).total_seconds() / 60, 0.05), 60.0)
        by_window: dict[int, list[float]] = defaultdict(list)
        for sample in self._router_lines(
            query.endpoint, query.deployment, query.start, query.end, query.include_mirrored
        ):
            latency = float(sample["ms"])
            latencies.append(latency)
            classes.extend(sample["classes"])
            errors += sample["status"] >= 500
            by_window[int((float(sample["t"]) - query.start.timestamp()) // width)].append(latency)
        ordered = sorted(latencies)
        windows = tuple(
            LatencyWindow(
                start=query.start + timedelta(seconds=index * width),
                seconds=width,
                p95_ms=float(_percentile(sorted(values), 95) or 0.0),
                requests=len(values),
            )
            for index, values in sorted(by_window.items())
        )
        return DeploymentMetrics(
            endpoint=query.endpoint,
            deployment=query.deployment,
            start=query.start,
            end=query.end,
            requests=len(latencies),
            errors=errors,
            p50_ms=_percentile(ordered, 50),
            p95_ms=_percentile(ordered, 95),
            p99_ms=_percentile(ordered, 99),
            latencies_ms=tuple(latencies),
            predicted_classes=tuple(classes),
            has_samples=True,
            p95_windows=windows,
        )

    def scoring_records(self, query: ScoringQuery) -> ScoringRecords:
        """The router's per-request lines of one deployment in the window (lines without a request id, written
        before ids were recorded, are skipped). A deployment that never served has no records, not an error."""
        check_resource_name("endpoint", query.endpoint)
        check_resource_name("deployment", query.deployment)
        kept: RequestSample[tuple[int, ScoringRecord]] = RequestSample(query.limit)
        lines = self._router_lines(query.endpoint, query.deployment, query.start, query.end, query.include_mirrored)
        for position, line in enumerate(lines):
            try:
                record = record_from_router_line(line, query.deployment, query.include_inputs)
            except (ValueError, KeyError, TypeError):
                continue  # not a line this reader understands
            if record is None:
                continue
            # A client may reuse a request id (a retry): each line is its own request here, keyed with its time.
            kept.get_or_add(f"{record.request_id}|{line['t']}", (position, record))
        return ScoringRecords(
            endpoint=query.endpoint,
            deployment=query.deployment,
            start=query.start,
            end=query.end,
            records=tuple(record for _, record in sorted(kept.kept.values(), key=lambda item: item[0])),
            truncated=kept.truncated,
        )
