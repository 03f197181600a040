"""The behavioural contract of the ML platform port, run against both adapters (see conftest.Harness)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.jobs import failure_with_log_tail
from shared.platform import (
    CHAMPION_TAG,
    STATUS_PHASES,
    ComputeSpec,
    DeploymentRef,
    DeploymentSpec,
    EndpointSpec,
    InvalidRequestError,
    InvokeRequest,
    JobOutputRequest,
    MetricsQuery,
    ModelRegistration,
    NotFoundError,
    Traffic,
    TrafficInvariantError,
    TrafficUpdate,
)
from tests.platform.conftest import Harness

ENDPOINT = "fraud-ep"


def _completed_job(h: Harness, name: str, lr: float = 0.5) -> None:
    h.platform.submit_job(h.job_spec(name, gated=False, lr=lr))
    h.finish(name) if h.kind == "azure" else None
    assert h.wait(name).phase == "completed"


def _two_versions(h: Harness) -> None:
    h.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    _completed_job(h, "train-a", lr=0.2)
    _completed_job(h, "train-b", lr=0.8)
    h.platform.register_model(ModelRegistration("fraud", "train-a"))
    h.platform.register_model(ModelRegistration("fraud", "train-b"))


def _blue_green(h: Harness) -> None:
    """Endpoint with blue (v1, 100% live) and green (v2, no traffic)."""
    _two_versions(h)
    h.platform.ensure_endpoint(EndpointSpec(ENDPOINT))
    for name, version in (("blue", "1"), ("green", "2")):
        state = h.platform.create_or_update_deployment(
            DeploymentSpec(ENDPOINT, name, "fraud", version, code=h.scoring_code)
        )
        assert state.provisioning_state == "Succeeded"
    h.platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100})))


# ------------------------------------------------------------------------- jobs


def test_an_existing_cluster_is_used_as_it_is_not_resized(harness: Harness) -> None:
    """Jobs run on the cluster's own VM size; the spec's size only creates a missing cluster (prepare_training
    warns when they differ)."""
    created = harness.platform.ensure_compute(ComputeSpec("cpu-cluster", instance_type="Standard_D4s_v3"))
    again = harness.platform.ensure_compute(ComputeSpec("cpu-cluster", instance_type="Standard_NC4as_T4_v3"))
    assert created.instance_type.lower() == again.instance_type.lower() == "standard_d4s_v3"
    if harness.fake is not None:
        puts = [r for r in harness.fake.requests if r.method == "PUT" and "/computes/cpu-cluster" in r.path]
        assert len(puts) == 1, "the second call must not send the cluster again"


def test_submit_is_idempotent_by_name(harness: Harness) -> None:
    harness.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    spec = harness.job_spec("train-1")
    first = harness.platform.submit_job(spec)
    second = harness.platform.submit_job(spec)
    assert first.name == second.name == "train-1"
    assert first.created_at == second.created_at  # the same job, not a new one
    if harness.fake is not None:
        assert [r.method for r in harness.fake.requests if r.path.endswith("/jobs/train-1")].count("PUT") == 1
    harness.finish("train-1")
    assert harness.wait("train-1").phase == "completed"


def test_job_walks_the_azure_ml_life_cycle(harness: Harness) -> None:
    harness.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    submitted = harness.platform.submit_job(harness.job_spec("train-1"))
    assert submitted.status in STATUS_PHASES
    assert submitted.phase in ("queued", "running")
    assert not submitted.terminal
    harness.start("train-1")
    running = harness.wait_status("train-1", {"Running"})
    assert (running.status, running.phase) == ("Running", "running")
    harness.finish("train-1")
    done = harness.wait("train-1")
    assert (done.status, done.phase, done.preempted) == ("Completed", "completed", False)
    assert done.outputs_uri == "azureml://jobs/train-1/outputs/artifacts"
    assert done.experiment_name == "fraud"


def test_failed_job_says_why(harness: Harness) -> None:
    harness.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    harness.platform.submit_job(harness.job_spec("train-bad", exit_code=3))
    harness.finish("train-bad", "Failed", "Execution failed. User process 'python' exited with status code 3")
    state = harness.wait("train-bad")
    assert (state.status, state.phase, state.preempted) == ("Failed", "failed", False)
    assert state.error
    assert "3" in state.error
    assert (state.exit_code, state.retryable) == (3, True)


def test_a_failed_jobs_error_ends_with_its_logs_last_lines_once(harness: Harness) -> None:
    """What job_status reports (shared.jobs.failure_with_log_tail): Azure ML's error names only the exit code, so the
    log's tail is added; the local runner's error already ends with it, and it is not repeated."""
    harness.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    harness.platform.submit_job(harness.job_spec("train-tail", exit_code=3))
    if harness.fake is not None:
        harness.fake.log_text["train-tail"] = "epoch 1\nfailing with exit code 3\n"
    harness.finish("train-tail", "Failed", "Execution failed. User process 'python' exited with status code 3")
    state = harness.wait("train-tail")
    error = failure_with_log_tail(harness.platform, state)
    assert error.startswith(state.error or "")
    assert error.count("failing with exit code 3") == 1
    assert error.rstrip().endswith("failing with exit code 3")


def test_a_job_that_exits_2_says_a_retry_would_fail_alike(harness: Harness) -> None:
    # train.py and evaluate.py exit 2 for bad arguments or data and for a diverged run: retrying repeats it.
    harness.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    harness.platform.submit_job(harness.job_spec("train-usage", exit_code=2))
    harness.finish("train-usage", "Failed", "Execution failed. User process 'python' exited with status code 2")
    state = harness.wait("train-usage")
    assert (state.phase, state.exit_code, state.retryable) == ("failed", 2, False)


def test_preempted_job_is_not_a_plain_failure(harness: Harness) -> None:
    harness.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    harness.platform.submit_job(harness.job_spec("train-pre", exit_code=75))
    harness.finish("train-pre", "Failed", "Execution failed. User process 'python' exited with status code 75")
    state = harness.wait("train-pre")
    assert state.status == "Failed"
    assert state.phase == "preempted"
    assert state.preempted
    assert state.terminal


def test_cancel_stops_a_job(harness: Harness) -> None:
    harness.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    harness.platform.submit_job(harness.job_spec("train-c"))
    harness.start("train-c")
    harness.wait_status("train-c", {"Running"})
    harness.platform.cancel_job("train-c")
    state = harness.wait("train-c")
    assert (state.status, state.phase) == ("Canceled", "canceled")
    assert harness.platform.cancel_job("train-c").phase == "canceled"  # cancelling twice is harmless


def test_unknown_job_is_not_found(harness: Harness) -> None:
    with pytest.raises(NotFoundError) as error:
        harness.platform.get_job("no-such-job")
    assert error.value.kind == "job"
    assert "no-such-job" in str(error.value)


def test_bad_job_name_refused_before_any_request(harness: Harness) -> None:
    spec = harness.job_spec("bad name!")
    with pytest.raises(InvalidRequestError):
        harness.platform.submit_job(spec)
    assert harness.request_count() in (None, 0)


# ------------------------------------------------------------------------- registry


def test_registry_versions_lineage_and_champion(harness: Harness) -> None:
    harness.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    _completed_job(harness, "train-a")
    assert harness.platform.list_model_versions("fraud") == []
    assert harness.platform.latest_model("fraud") is None
    lineage = {"trigger": "blob:abc", "data.sha256": "0f" * 32, "params.lr": "0.5"}
    first = harness.platform.register_model(
        ModelRegistration("fraud", "train-a", tags={"kind": "fraud"}, properties=lineage)
    )
    second = harness.platform.register_model(ModelRegistration("fraud", "train-a"))
    assert (first.version, second.version) == ("1", "2")
    assert all(first.properties[k] == v for k, v in lineage.items())
    assert first.tags["kind"] == "fraud"
    assert [v.version for v in harness.platform.list_model_versions("fraud")] == ["1", "2"]
    latest = harness.platform.latest_model("fraud")
    assert latest is not None
    assert latest.version == "2"
    assert harness.platform.get_model("fraud", "1").properties["params.lr"] == "0.5"

    assert harness.platform.champion("fraud") is None
    harness.platform.set_champion("fraud", "1")
    champion = harness.platform.champion("fraud")
    assert champion is not None
    assert champion.version == "1"
    assert champion.tags["kind"] == "fraud"
    harness.platform.set_champion("fraud", "2")
    champion = harness.platform.champion("fraud")
    assert champion is not None
    assert champion.version == "2"
    assert CHAMPION_TAG not in harness.platform.get_model("fraud", "1").tags
    assert harness.platform.get_model("fraud", "1").tags["kind"] == "fraud"  # other tags survive


def test_registering_from_an_unfinished_job_is_refused(harness: Harness) -> None:
    harness.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    harness.platform.submit_job(harness.job_spec("train-running"))
    with pytest.raises(InvalidRequestError, match="Completed"):
        harness.platform.register_model(ModelRegistration("fraud", "train-running"))
    harness.finish("train-running")
    harness.wait("train-running")


def test_unknown_model_version_is_not_found(harness: Harness) -> None:
    with pytest.raises(NotFoundError):
        harness.platform.get_model("fraud", "7")


# ------------------------------------------------------------------------- deploy, traffic, rollback


def test_deploy_traffic_steps_and_rollback(harness: Harness) -> None:
    _blue_green(harness)
    platform = harness.platform
    assert {d.name for d in platform.list_deployments(ENDPOINT)} == {"blue", "green"}
    green = platform.get_deployment(DeploymentRef(ENDPOINT, "green"))
    assert (green.model_name, green.model_version) == ("fraud", "2")
    assert platform.get_traffic(ENDPOINT) == Traffic({"blue": 100}, {})

    # shadow, then canary steps
    assert platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100}, {"green": 20}))) == Traffic(
        {"blue": 100}, {"green": 20}
    )
    for step in (10, 50):
        traffic = platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100 - step, "green": step})))
        assert traffic == Traffic({"blue": 100 - step, "green": step}, {})
        assert platform.get_traffic(ENDPOINT) == traffic

    # a gate failed: roll back to the champion, then retire the challenger
    assert platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100, "green": 0}))) == Traffic({"blue": 100})
    platform.delete_deployment(DeploymentRef(ENDPOINT, "green"))
    assert [d.name for d in platform.list_deployments(ENDPOINT)] == ["blue"]
    with pytest.raises(NotFoundError):
        platform.get_deployment(DeploymentRef(ENDPOINT, "green"))


def test_invoke_scores_on_the_split_or_a_pinned_deployment(harness: Harness) -> None:
    _blue_green(harness)
    payload = {"data": [{"amount": 0.5}, {"amount": 0.1}]}
    result = harness.platform.invoke(InvokeRequest(ENDPOINT, payload))
    assert result.status_code == 200
    assert len(result.body["predictions"]) == 2
    assert {"class", "probability"} <= set(result.body["predictions"][0])
    pinned = harness.platform.invoke(InvokeRequest(ENDPOINT, payload, deployment="green"))
    assert pinned.status_code == 200
    assert pinned.deployment == "green"


def test_deployment_of_an_unknown_model_is_refused(harness: Harness) -> None:
    harness.platform.ensure_endpoint(EndpointSpec(ENDPOINT))
    if harness.fake is not None:
        harness.fake.fail_next("PUT", r"/deployments/blue$", 404, code="ModelNotFound")
    with pytest.raises(NotFoundError):
        harness.platform.create_or_update_deployment(
            DeploymentSpec(ENDPOINT, "blue", "fraud", "9", code=harness.scoring_code)
        )


BAD_TRAFFIC = {
    "sums to 90": Traffic({"blue": 90}),
    "sums to 110": Traffic({"blue": 100, "green": 10}),
    "negative share": Traffic({"blue": 110, "green": -10}),
    "mirror above 50": Traffic({"blue": 100}, {"green": 60}),
    "mirror to a live deployment": Traffic({"blue": 90, "green": 10}, {"green": 10}),
    "mirror to two deployments": Traffic({"blue": 100}, {"green": 10, "red": 10}),
    "mirror with no live traffic": Traffic({}, {"green": 10}),
}


@pytest.mark.parametrize("case", list(BAD_TRAFFIC))
def test_traffic_invariant_violation_is_refused_before_any_request(harness: Harness, case: str) -> None:
    _blue_green(harness)
    before_traffic = harness.platform.get_traffic(ENDPOINT)
    marker, count = harness.write_marker(), harness.request_count()
    with pytest.raises(TrafficInvariantError) as error:
        harness.platform.set_traffic(TrafficUpdate(ENDPOINT, BAD_TRAFFIC[case]))
    assert error.value.hint  # says what to do
    assert harness.request_count() == count  # not even a read was sent
    assert harness.write_marker() == marker
    assert harness.platform.get_traffic(ENDPOINT) == before_traffic


def test_traffic_to_an_unknown_deployment_is_refused_before_any_write(harness: Harness) -> None:
    _blue_green(harness)
    marker = harness.write_marker()
    with pytest.raises(TrafficInvariantError, match="does not exist"):
        harness.platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 90, "purple": 10})))
    assert harness.write_marker() == marker  # only reads (the deployment list) were sent


def test_deleting_a_deployment_with_traffic_is_refused_before_any_write(harness: Harness) -> None:
    _blue_green(harness)
    harness.platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100}, {"green": 10})))
    marker = harness.write_marker()
    for name in ("blue", "green"):  # live traffic, mirrored traffic
        with pytest.raises(TrafficInvariantError, match="still takes"):
            harness.platform.delete_deployment(DeploymentRef(ENDPOINT, name))
    assert harness.write_marker() == marker
    assert {d.name for d in harness.platform.list_deployments(ENDPOINT)} == {"blue", "green"}


def test_health_metrics_cover_the_window(harness: Harness) -> None:
    _blue_green(harness)
    start = datetime.now(UTC) - timedelta(seconds=1)
    if harness.fake is not None:
        harness.fake.metrics = azure_monitor_answer(start, requests_2xx=95, requests_5xx=5, p95=120.0)
    else:
        for _ in range(20):
            harness.platform.invoke(InvokeRequest(ENDPOINT, {"data": [{"amount": 0.9}]}))
    metrics = harness.platform.deployment_metrics(
        MetricsQuery(ENDPOINT, "blue", start, datetime.now(UTC) + timedelta(seconds=1))
    )
    assert metrics.requests == (100 if harness.fake else 20)
    assert metrics.error_rate == (0.05 if harness.fake else 0.0)
    assert metrics.p50_ms is not None
    assert metrics.p95_ms is not None
    assert metrics.p99_ms is not None
    assert metrics.p50_ms <= metrics.p95_ms <= metrics.p99_ms
    if harness.kind == "local":  # raw samples for the statistical tests
        assert metrics.has_samples
        assert len(metrics.latencies_ms) == 20
        assert set(metrics.predicted_classes) == {"1"}
    # Per-window p95s for the canary's paired comparison: every request in exactly one window, in time order.
    windows = metrics.p95_windows
    assert windows
    assert sum(w.requests or 0 for w in windows) == metrics.requests
    assert [w.start for w in windows] == sorted({w.start for w in windows})
    if harness.kind == "azure":  # Azure Monitor's one-minute series
        assert [(w.start, w.seconds, w.requests, w.p95_ms) for w in windows] == [
            (start.replace(second=0, microsecond=0), 60.0, 100, 120.0)
        ]
    else:  # 1/60 of the query window (at least 50 ms), counted from its start: another deployment's line up
        width = max((metrics.end - metrics.start).total_seconds() / 60, 0.05)
        for window in windows:
            offset = (window.start - metrics.start).total_seconds() / width
            assert window.seconds == width
            assert abs(offset - round(offset)) < 1e-3  # datetimes keep microseconds
            assert metrics.start <= window.start < metrics.end
            assert window.p95_ms <= max(metrics.latencies_ms)


def azure_monitor_answer(start: datetime, requests_2xx: int, requests_5xx: int, p95: float) -> list[dict[str, object]]:
    """What metrics:getBatch returns for the endpoint: one minute, split by status class; latency percentiles."""
    return azure_monitor_minutes(start, [(requests_2xx, requests_5xx, p95)])


def azure_monitor_minutes(start: datetime, minutes: list[tuple[int, int, float | None]]) -> list[dict[str, object]]:
    """The same for consecutive minutes from ``start``'s: (2xx, 5xx, p95 or None when Azure has no value)."""
    first = start.replace(second=0, microsecond=0)
    stamps = [(first + timedelta(minutes=i)).isoformat() for i in range(len(minutes))]
    resource = "/subscriptions/x/resourceGroups/y/providers/Microsoft.MachineLearningServices/workspaces/z/onlineEndpoints/fraud-ep"

    def series(metric: str, points: list[dict[str, object]], dims: dict[str, str]) -> dict[str, object]:
        return {
            "id": f"{resource}/providers/Microsoft.Insights/metrics/{metric}",
            "type": "Microsoft.Insights/metrics",
            "name": {"value": metric},
            "unit": "Count",
            "timeseries": [
                {"metadatavalues": [{"name": {"value": k}, "value": v} for k, v in dims.items()], "data": points}
            ],
        }

    requests = [
        series(
            "RequestsPerMinute",
            [{"timeStamp": stamp, "total": minute[column]} for stamp, minute in zip(stamps, minutes, strict=True)],
            {"deployment": "blue", "statusCodeClass": status_class},
        )
        for column, status_class in ((0, "2xx"), (1, "5xx"))
    ]

    def points(scale: float) -> list[dict[str, object]]:
        return [
            {"timeStamp": stamp} if p95 is None else {"timeStamp": stamp, "average": p95 * scale}
            for stamp, (_, _, p95) in zip(stamps, minutes, strict=True)
        ]

    latency = [
        series(name, points(scale), {"deployment": "blue"})
        for name, scale in (("RequestLatency_P50", 0.5), ("RequestLatency_P95", 1.0), ("RequestLatency_P99", 1.5))
    ]
    common = {
        "starttime": start.isoformat(),
        "endtime": datetime.now(UTC).isoformat(),
        "interval": "PT1M",
        "resourceid": resource,
    }
    return [{**common, "value": requests}, {**common, "value": latency}]


def test_job_outputs_can_be_read_back_locally(harness: Harness) -> None:
    if harness.kind == "azure":
        pytest.skip(
            "the Azure path reads blobs: test_azureml.py::test_job_outputs_are_read_from_the_workspace_datastore"
        )
    harness.platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    _completed_job(harness, "train-a", lr=0.3)
    document = json.loads(harness.platform.read_job_output(JobOutputRequest("train-a", "metrics.json")))
    assert document == {"pr_auc": pytest.approx(0.53)}
    with pytest.raises(NotFoundError):
        harness.platform.read_job_output(JobOutputRequest("train-a", "missing.json"))
    with pytest.raises(InvalidRequestError):
        harness.platform.read_job_output(JobOutputRequest("train-a", "/etc/passwd"))
