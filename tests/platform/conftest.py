"""Fixtures for the platform contract suite: the same expectations, run against both adapters.

``harness`` is parametrised over ``local`` (LocalPlatform for real: subprocess jobs, a real scoring
server on loopback) and ``azure`` (AzureMLPlatform through the real MLClient, answered by the stateful
fake transport in ``fake_arm.py``). A :class:`Harness` hides only what must differ: how a test lets a
job finish (a gate file locally; the fake's job status in Azure) and what "a request was sent" means.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.platform import JobInput, JobSpec, JobState, MLPlatform
from shared.platform.local import LocalPlatform
from tests.platform.fake_arm import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeAzureML, FakeCredential

HERE = Path(__file__).resolve().parent
TRAINING_CODE_ASSET = "azureml:perennial-training-code:1"
SCORING_CODE_ASSET = "azureml:perennial-score-code:1"


@dataclass
class Harness:
    kind: str
    platform: MLPlatform
    tmp: Path
    fake: FakeAzureML | None = None
    gates: dict[str, Path] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return "fixtures" if self.kind == "local" else TRAINING_CODE_ASSET

    @property
    def scoring_code(self) -> str:
        return "fixtures" if self.kind == "local" else SCORING_CODE_ASSET

    def job_spec(self, name: str, *, exit_code: int = 0, gated: bool = True, lr: float = 0.5) -> JobSpec:
        """A training job on the fixture script; a gated job runs until :meth:`finish` lets it go."""
        data = self.tmp / "data.csv"
        data.write_text("amount,label\n1.0,0\n")
        # Azure reads inputs from a datastore; a local path would make the SDK upload it.
        data_path = str(data) if self.kind == "local" else "azureml://datastores/landing/paths/fraud/data.csv"
        env: dict[str, str] = {}
        if gated:
            self.gates[name] = self.tmp / f"gate-{name}"
            env["FIXTURE_GATE"] = str(self.gates[name])
        if exit_code:
            env["FIXTURE_EXIT"] = str(exit_code)
        return JobSpec(
            name=name,
            experiment_name="fraud",
            compute="cpu-cluster",
            code=self.code,
            args=(
                "--data",
                "{inputs.data}",
                "--contract",
                "{inputs.data}",
                "--output-dir",
                "{outputs}",
                "--lr",
                str(lr),
            ),
            inputs={"data": JobInput(data_path, "uri_file")},
            environment_variables=env,
            timeout_seconds=600,
        )

    def finish(self, name: str, status: str = "Completed", error: str | None = None) -> None:
        """Let a gated job end. Locally the fixture script decides the outcome (its exit code)."""
        if self.kind == "local":
            self.gates[name].touch()
        else:
            assert self.fake is not None
            self.fake.set_job_status(name, status, error)

    def start(self, name: str) -> None:
        """Azure: the service moves the job on; locally the runner does it by itself."""
        if self.fake is not None:
            self.fake.set_job_status(name, "Running")

    def wait(self, name: str, timeout: float = 60.0) -> JobState:
        deadline = time.monotonic() + timeout
        while True:
            state = self.platform.get_job(name)
            if state.terminal or time.monotonic() > deadline:
                return state
            time.sleep(0.05)

    def wait_status(self, name: str, statuses: set[str], timeout: float = 30.0) -> JobState:
        deadline = time.monotonic() + timeout
        while True:
            state = self.platform.get_job(name)
            if state.status in statuses or time.monotonic() > deadline:
                return state
            time.sleep(0.05)

    def write_marker(self) -> object:
        """Something that changes whenever a write reaches the platform (Azure: write requests; local: files)."""
        if self.fake is not None:
            return [(r.method, r.path) for r in self.fake.writes()]
        assert isinstance(self.platform, LocalPlatform)
        digest = hashlib.sha256()
        root = self.platform.layout.root / "endpoints"
        for path in sorted(root.rglob("*.json")) if root.exists() else []:
            if "workers" not in path.parts and not path.name.startswith("router"):
                digest.update(path.name.encode() + path.read_bytes())
        return digest.hexdigest()

    def request_count(self) -> int | None:
        return len(self.fake.requests) if self.fake is not None else None


def make_local(tmp_path: Path) -> LocalPlatform:
    return LocalPlatform(tmp_path / "state", code_root=HERE)


@pytest.fixture
def local_platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    platform = make_local(tmp_path)
    try:
        yield platform
    finally:
        cleanup_local(platform)


def cleanup_local(platform: LocalPlatform) -> None:
    """Stop every process the test started: endpoint servers, and jobs still running."""
    platform.stop_endpoints()
    for job in platform.list_jobs():
        if not job.terminal:
            platform.layout.cancel_file(job.name).touch()
            platform.cancel_job(job.name)


@pytest.fixture
def fake_arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzureML]:
    from azure.ai.ml.constants._common import LROConfigurations

    # The SDK sleeps POLL_INTERVAL seconds between LRO polls; the fake answers at once.
    monkeypatch.setattr(LROConfigurations, "POLL_INTERVAL", 0)
    yield FakeAzureML()
    wait_for_lro_pollers()


def wait_for_lro_pollers(timeout: float = 10.0) -> None:
    """Until no azure-core LRO poller thread is left. Each polls until its operation is terminal, here without a
    pause, printing AzureMLPolling's dot each time: one left polling would spin beside every later test and
    print into its stdout, so a test that leaves an operation non-terminal fails here."""
    deadline = time.monotonic() + timeout
    while pollers := [t.name for t in threading.enumerate() if t.name.startswith("LROPoller(")]:
        assert time.monotonic() < deadline, f"{len(pollers)} LRO poller(s) still polling: finish their operations"
        time.sleep(0.01)


def _azure_platform(fake_arm: FakeAzureML, **options: Any) -> Any:
    """The real AzureMLPlatform on the fake ARM transport, polling and retrying without waits."""
    from shared.platform.azureml import AzureMLPlatform

    return AzureMLPlatform(
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        FakeCredential(),
        client_kwargs={"transport": fake_arm, "polling_interval": 0},
        retry_initial_wait=0.0,
        **options,
    )


def azure_platform_on_blobs(fake_arm: FakeAzureML, blobs: Any, asked: list[str]) -> Any:
    """An AzureMLPlatform whose datastore reads go to ``blobs`` (an Azurite BlobServiceClient); each
    account URL the adapter asks for is appended to ``asked``."""

    def factory(account_url: str) -> Any:
        asked.append(account_url)
        return blobs

    return _azure_platform(fake_arm, blob_service_factory=factory)


@pytest.fixture
def azure_platform(fake_arm: FakeAzureML) -> MLPlatform:
    platform: MLPlatform = _azure_platform(fake_arm, retry_attempts=3)
    return platform


@pytest.fixture(params=["local", "azure"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "local":
        platform = make_local(tmp_path)
        try:
            yield Harness("local", platform, tmp_path)
        finally:
            cleanup_local(platform)
    else:
        fake = request.getfixturevalue("fake_arm")
        yield Harness("azure", request.getfixturevalue("azure_platform"), tmp_path, fake=fake)
