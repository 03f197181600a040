"""The on-disk layout of the local ML stand-in, shared by LocalPlatform and devhost/mlservice's processes.

Everything lives under ``<PERENNIAL_STATE_DIR>/ml/`` so any process (the durable activities in
devhost's thread pool, a test, the CLI) sees the same jobs, models and endpoints::

    ml/computes/<name>.json               the cluster (max nodes = the local concurrency cap)
    ml/computes/<name>/slot-<i>.lock      one flock per node; a running job holds instance_count of them
    ml/jobs/<name>/job.json               the JobSpec (written once, by submit)
    ml/jobs/<name>/state.json             status, times, exit code (written by the job's runner process)
    ml/jobs/<name>/runner.lock            held (flock) by the runner for as long as it lives
    ml/jobs/<name>/cancel                 present once a cancel was asked for
    ml/jobs/<name>/user_logs/std_log*.txt stdout+stderr of the script (Azure ML's file names)
    ml/jobs/<name>/outputs/artifacts/     the job's output folder ({outputs} in the args)
    ml/models/<name>/<version>/model.json + artifacts/   the registry
    ml/endpoints/<name>/endpoint.json     key, traffic; deployments/<d>.json; router.json; metrics/<d>.jsonl

Liveness is an ``flock`` held by the living process, not a pid: the kernel drops it when the
process dies, however it dies, and pids get reused. Writes are atomic (temp file + rename),
so a reader never sees half a JSON document. POSIX only (the local stand-in runs on Linux/macOS).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.platform import DeploymentSpec, JobInput, JobSpec, ProbeSpec


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def parse_iso(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def write_json(path: Path, document: object) -> None:
    """Write atomically: a reader sees the old document or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return document if isinstance(document, dict) else None


class FileLock:
    """An exclusive ``flock`` on a file; released by close() or by the kernel when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.02)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def is_held(path: Path) -> bool:
    """True if some living process holds the lock at ``path``. (Probing takes the lock for microseconds;
    owners acquire with a timeout, so a probe never makes them give up.)"""
    if not path.exists():
        return False
    probe = FileLock(path)
    if probe.acquire():
        probe.release()
        return False
    return True


@contextlib.contextmanager
def locked(path: Path, timeout: float = 30.0) -> Iterator[None]:
    """Serialise a read-modify-write between processes (e.g. allocating a model version)."""
    lock = FileLock(path)
    if not lock.acquire(timeout):
        raise TimeoutError(f"{path} stayed locked for {timeout}s: another process is stuck holding it")
    try:
        yield
    finally:
        lock.release()


class LocalLayout:
    """Paths of the local stand-in's state (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir).resolve() / "ml"

    def compute_file(self, name: str) -> Path:
        return self.root / "computes" / f"{name}.json"

    def slot_lock(self, compute: str, index: int) -> Path:
        return self.root / "computes" / compute / f"slot-{index}.lock"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    def job_dir(self, name: str) -> Path:
        return self.jobs_dir / name

    def job_spec_file(self, name: str) -> Path:
        return self.job_dir(name) / "job.json"

    def job_state_file(self, name: str) -> Path:
        return self.job_dir(name) / "state.json"

    def runner_lock(self, name: str) -> Path:
        return self.job_dir(name) / "runner.lock"

    def cancel_file(self, name: str) -> Path:
        return self.job_dir(name) / "cancel"

    def job_logs_dir(self, name: str) -> Path:
        return self.job_dir(name) / "user_logs"

    def job_outputs_dir(self, name: str, output: str = "artifacts") -> Path:
        return self.job_dir(name) / "outputs" / output

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def model_version_dir(self, name: str, version: str) -> Path:
        return self.model_dir(name) / version

    def endpoint_dir(self, name: str) -> Path:
        return self.root / "endpoints" / name

    def endpoint_file(self, name: str) -> Path:
        return self.endpoint_dir(name) / "endpoint.json"

    def deployment_file(self, endpoint: str, deployment: str) -> Path:
        return self.endpoint_dir(endpoint) / "deployments" / f"{deployment}.json"

    def deployment_status_file(self, endpoint: str, deployment: str) -> Path:
        return self.endpoint_dir(endpoint) / "deployments" / f"{deployment}.status.json"

    def faults_file(self, endpoint: str, deployment: str) -> Path:
        return self.endpoint_dir(endpoint) / "deployments" / f"{deployment}.faults.json"

    def deployment_log(self, endpoint: str, deployment: str) -> Path:
        return self.endpoint_dir(endpoint) / "logs" / f"{deployment}.log"

    def metrics_file(self, endpoint: str, deployment: str) -> Path:
        return self.endpoint_dir(endpoint) / "metrics" / f"{deployment}.jsonl"

    def router_file(self, endpoint: str) -> Path:
        return self.endpoint_dir(endpoint) / "router.json"

    def router_lock(self, endpoint: str) -> Path:
        return self.endpoint_dir(endpoint) / "router.lock"

    def router_start_lock(self, endpoint: str) -> Path:
        return self.endpoint_dir(endpoint) / "router-start.lock"


# --------------------------------------------------------------------------- (de)serialising specs


def job_spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    document = asdict(spec)
    document["args"] = list(spec.args)
    return document


def job_spec_from_dict(document: dict[str, Any]) -> JobSpec:
    values = dict(document)
    values["args"] = tuple(values.get("args", ()))
    values["inputs"] = {k: JobInput(**v) for k, v in values.get("inputs", {}).items()}
    return JobSpec(**values)


def deployment_spec_to_dict(spec: DeploymentSpec) -> dict[str, Any]:
    return asdict(spec)


def deployment_spec_from_dict(document: dict[str, Any]) -> DeploymentSpec:
    values = dict(document)
    values["liveness_probe"] = ProbeSpec(**values.get("liveness_probe", {}))
    values["readiness_probe"] = ProbeSpec(**values.get("readiness_probe", {}))
    return DeploymentSpec(**values)


def resolve_input_path(layout: LocalLayout, path: str) -> str:
    """Map Azure ML references onto the local stand-in's folders; leave local paths as they are.

    ``azureml://jobs/<job>/outputs/<name>`` → that job's output folder; ``azureml:<model>:<version>`` →
    the registered model's files; ``file://`` URIs → plain paths. Anything else is passed through.
    """
    prefix = "azureml://jobs/"
    if path.startswith(prefix):
        job, _, rest = path[len(prefix) :].partition("/outputs/")
        output, _, tail = rest.partition("/")
        resolved = layout.job_outputs_dir(job, output or "artifacts")
        return str(resolved / tail) if tail else str(resolved)
    if path.startswith("azureml:") and not path.startswith("azureml://"):
        parts = path.split(":")
        if len(parts) == 3:
            return str(layout.model_version_dir(parts[1], parts[2]) / "artifacts")
    if path.startswith("file://"):
        return path[len("file://") :]
    return path
