"""The local stand-in's own promises: the node cap, re-attachment, honest lost jobs, the scoring server."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.platform import (
    ComputeSpec,
    DeploymentFailedError,
    DeploymentLogsRequest,
    DeploymentRef,
    DeploymentSpec,
    EndpointSpec,
    InvokeRequest,
    LogsRequest,
    MetricsQuery,
    ModelRegistration,
    NotFoundError,
    Traffic,
    TrafficUpdate,
)
from shared.platform.local import FaultSpec, LocalPlatform
from shared.platform.localstore import read_json
from tests.platform.conftest import HERE, Harness, cleanup_local

ENDPOINT = "fraud-ep"


def _harness(platform: LocalPlatform, tmp_path: Path) -> Harness:
    return Harness("local", platform, tmp_path)


def _statuses(platform: LocalPlatform, names: list[str]) -> list[str]:
    return [platform.get_job(n).status for n in names]


def _wait_for(predicate: object, timeout: float = 30.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_four_jobs_with_a_cap_of_two_leave_two_queued(local_platform: LocalPlatform, tmp_path: Path) -> None:
    h = _harness(local_platform, tmp_path)
    local_platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    names = [f"train-{i}" for i in range(4)]
    for name in names:
        local_platform.submit_job(h.job_spec(name))
    _wait_for(lambda: sorted(_statuses(local_platform, names)) == ["Queued", "Queued", "Running", "Running"])
    time.sleep(0.5)  # and it stays that way while the two run
    assert sorted(_statuses(local_platform, names)) == ["Queued", "Queued", "Running", "Running"]
    running = [n for n in names if local_platform.get_job(n).status == "Running"]
    queued = [n for n in names if n not in running]
    for name in running:
        h.finish(name)
    _wait_for(lambda: _statuses(local_platform, queued) == ["Running", "Running"])
    assert _statuses(local_platform, running) == ["Completed", "Completed"]
    for name in queued:
        h.finish(name)
    assert [h.wait(n).status for n in names] == ["Completed"] * 4
    # Each walked Azure ML's whole life-cycle, Starting included (too brief to catch by polling).
    for name in names:
        history = (read_json(local_platform.layout.job_state_file(name)) or {}).get("history", [])
        walked = [step["status"] for step in history]
        assert walked == ["Queued", "Starting", "Running", "Completed"], (name, walked)


OWNER = """
import sys, time
sys.path.insert(0, {root!r})
from shared.platform import ComputeSpec
from shared.platform.local import LocalPlatform
from tests.platform.conftest import Harness
from pathlib import Path
platform = LocalPlatform({state!r}, code_root={code!r})
platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
h = Harness("local", platform, Path({tmp!r}))
platform.submit_job(h.job_spec("train-owned"))
while platform.get_job("train-owned").status != "Running":
    time.sleep(0.05)
print("running", flush=True)
time.sleep(600)
"""


def test_killing_the_host_and_restarting_reattaches_running_jobs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    root = str(HERE.parents[1])
    script = OWNER.format(root=root, state=str(state), code=str(HERE), tmp=str(tmp_path))
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "running"
        owner.kill()  # the host dies hard: no cleanup, no goodbye
        owner.wait()
        restarted = LocalPlatform(state, code_root=HERE)  # a new host process
        try:
            job = restarted.get_job("train-owned")
            assert (job.status, job.phase) == ("Running", "running")
            (tmp_path / "gate-train-owned").touch()
            _wait_for(lambda: restarted.get_job("train-owned").terminal)
            assert restarted.get_job("train-owned").status == "Completed"
            assert "done" in restarted.job_logs(LogsRequest("train-owned"))
        finally:
            cleanup_local(restarted)
    finally:
        if owner.poll() is None:
            owner.kill()


def test_a_job_whose_process_is_gone_is_reported_honestly(local_platform: LocalPlatform, tmp_path: Path) -> None:
    h = _harness(local_platform, tmp_path)
    local_platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    local_platform.submit_job(h.job_spec("train-lost"))
    _wait_for(lambda: local_platform.get_job("train-lost").status == "Running")
    state = read_json(local_platform.layout.job_state_file("train-lost")) or {}
    os.kill(int(state["runner_pid"]), signal.SIGKILL)  # e.g. the machine rebooted
    _wait_for(lambda: local_platform.get_job("train-lost").terminal, timeout=10)
    job = local_platform.get_job("train-lost")
    assert (job.status, job.phase) == ("Failed", "failed")
    assert job.error
    assert "process lost" in job.error
    assert "--resume auto" in job.error
    # the training process died with its runner (no orphan keeps a GPU busy)
    child = int(state["child_pids"][0])
    _wait_for(
        lambda: not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2], 10
    )


def test_distributed_job_gets_torchrun_style_ranks(local_platform: LocalPlatform, tmp_path: Path) -> None:
    h = _harness(local_platform, tmp_path)
    local_platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    spec = h.job_spec("train-ddp", gated=False)
    from dataclasses import replace

    local_platform.submit_job(replace(spec, distribution="pytorch", instance_count=2))
    assert h.wait("train-ddp").status == "Completed"
    logs = local_platform.job_logs(LogsRequest("train-ddp"))
    assert "rank=0 world=2" in logs
    assert "rank=1 world=2" in logs


def test_a_job_asking_for_more_nodes_than_the_cluster_has_is_refused(
    local_platform: LocalPlatform, tmp_path: Path
) -> None:
    from dataclasses import replace

    from shared.platform import InvalidRequestError

    h = _harness(local_platform, tmp_path)
    local_platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    with pytest.raises(InvalidRequestError, match="max_instances"):
        local_platform.submit_job(replace(h.job_spec("train-big"), instance_count=3))
    with pytest.raises(NotFoundError, match="ensure_compute"):
        local_platform.submit_job(replace(h.job_spec("train-nowhere"), compute="no-cluster"))


# ------------------------------------------------------------------------- the scoring server


def _endpoint(platform: LocalPlatform, tmp_path: Path, deployments: dict[str, float]) -> None:
    """An endpoint with one deployment per (name, threshold); each a model trained with lr=threshold."""
    h = _harness(platform, tmp_path)
    platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    platform.ensure_endpoint(EndpointSpec(ENDPOINT))
    for name, threshold in deployments.items():
        platform.submit_job(h.job_spec(f"train-{name}", gated=False, lr=threshold))
        assert h.wait(f"train-{name}").status == "Completed"
        version = platform.register_model(ModelRegistration("fraud", f"train-{name}")).version
        platform.create_or_update_deployment(DeploymentSpec(ENDPOINT, name, "fraud", version, code="fixtures"))


class Client:
    """A keep-alive client of the local scoring URI, speaking Azure ML's protocol."""

    def __init__(self, platform: LocalPlatform) -> None:
        uri, self.key = platform.scoring_address(ENDPOINT)
        port = int(uri.split(":")[2].split("/")[0])
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def score(
        self, payload: object, key: str | None = None, deployment: str | None = None
    ) -> tuple[int, dict[str, object], str | None]:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key or self.key}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        self.conn.request("POST", "/score", body=json.dumps(payload), headers=headers)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read()), response.getheader("azureml-model-deployment")


@pytest.mark.slow
def test_a_10_90_split_routes_within_3_percent_over_2000_requests(
    local_platform: LocalPlatform, tmp_path: Path
) -> None:
    _endpoint(local_platform, tmp_path, {"blue": 0.5, "green": 0.5})
    local_platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 90, "green": 10})))
    client = Client(local_platform)
    served: Counter[str | None] = Counter()
    for _ in range(2000):
        status, _, deployment = client.score({"data": [{"amount": 1.0}]})
        assert status == 200
        served[deployment] += 1
    share = served["green"] / 2000
    print(f"green served {served['green']}/2000 = {share:.3f}")
    assert abs(share - 0.10) <= 0.03
    assert served["blue"] + served["green"] == 2000


def test_mirror_traffic_reaches_the_shadow_without_affecting_responses(
    local_platform: LocalPlatform, tmp_path: Path
) -> None:
    # blue predicts "1" for amount 0.6 (threshold 0.5); the shadow green never does (threshold 0.9)
    _endpoint(local_platform, tmp_path, {"blue": 0.5, "green": 0.9})
    local_platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100}, {"green": 50})))
    start = datetime.now(UTC)
    client = Client(local_platform)
    for _ in range(200):
        status, body, deployment = client.score({"data": [{"amount": 0.6}]})
        assert (status, deployment) == (200, "blue")
        assert body["predictions"] == [{"class": "1", "probability": 0.9}]  # never the shadow's answer
    window = MetricsQuery(ENDPOINT, "green", start, datetime.now(UTC) + timedelta(seconds=5), include_mirrored=True)
    _wait_for(lambda: local_platform.deployment_metrics(window).requests >= 70)
    mirrored = local_platform.deployment_metrics(window)
    assert 70 <= mirrored.requests <= 130  # ~50% of 200
    assert set(mirrored.predicted_classes) == {"0"}  # the shadow really scored them
    live_only = local_platform.deployment_metrics(MetricsQuery(ENDPOINT, "green", start, datetime.now(UTC)))
    assert live_only.requests == 0  # mirrored requests are not counted as green's live traffic
    assert local_platform.deployment_metrics(MetricsQuery(ENDPOINT, "blue", start, datetime.now(UTC))).requests == 200


def test_key_auth_and_the_deployment_header(local_platform: LocalPlatform, tmp_path: Path) -> None:
    _endpoint(local_platform, tmp_path, {"blue": 0.5})
    local_platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100})))
    client = Client(local_platform)
    assert client.score({"data": []}, key="wrong")[0] == 401
    assert client.score({"data": [{"amount": 1.0}]}, deployment="blue")[0] == 200
    status, body, _ = client.score({"data": [{"amount": 1.0}]}, deployment="purple")
    assert status == 404
    assert "purple" in str(body["error"])
    status, body, _ = client.score({"data": [{"amount": "lots"}]})
    assert status == 400
    assert "row 0" in str(body["error"])


def test_faults_errors_latency_and_crash_on_load(local_platform: LocalPlatform, tmp_path: Path) -> None:
    _endpoint(local_platform, tmp_path, {"blue": 0.5})
    local_platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100})))
    ref = DeploymentRef(ENDPOINT, "blue")
    start = datetime.now(UTC)
    local_platform.inject_faults(ref, FaultSpec(error_rate=1.0, added_latency_ms=60))
    for _ in range(5):
        assert local_platform.invoke(InvokeRequest(ENDPOINT, {"data": [{"amount": 1.0}]})).status_code == 500
    metrics = local_platform.deployment_metrics(MetricsQuery(ENDPOINT, "blue", start, datetime.now(UTC)))
    assert (metrics.requests, metrics.errors, metrics.error_rate) == (5, 5, 1.0)
    assert metrics.p50_ms is not None
    assert metrics.p50_ms >= 60

    local_platform.inject_faults(ref, FaultSpec(crash_on_load=True))
    with pytest.raises(DeploymentFailedError, match="exited"):
        local_platform.create_or_update_deployment(DeploymentSpec(ENDPOINT, "blue", "fraud", "1", code="fixtures"))
    assert "crash_on_load" in local_platform.deployment_logs(DeploymentLogsRequest(ENDPOINT, "blue"))
    # Like Azure, a failed update leaves the previous instances serving.
    local_platform.inject_faults(ref, FaultSpec())
    assert local_platform.invoke(InvokeRequest(ENDPOINT, {"data": [{"amount": 1.0}]})).status_code == 200


def test_endpoints_come_back_after_their_server_stops(local_platform: LocalPlatform, tmp_path: Path) -> None:
    _endpoint(local_platform, tmp_path, {"blue": 0.5})
    local_platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100})))
    local_platform.stop_endpoints()  # e.g. devhost shut down
    fresh = LocalPlatform(local_platform.state_dir, code_root=HERE)
    assert fresh.resume() == [ENDPOINT]
    result = fresh.invoke(InvokeRequest(ENDPOINT, {"data": [{"amount": 1.0}]}))
    assert (result.status_code, result.deployment) == (200, "blue")
    assert fresh.get_traffic(ENDPOINT) == Traffic({"blue": 100})
