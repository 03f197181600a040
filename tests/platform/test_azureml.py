"""The Azure adapter's requests, retries and error mapping, through the real SDK and the fake transport."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.platform import (
    ComputeSpec,
    DeploymentFailedError,
    DeploymentRef,
    DeploymentSpec,
    EndpointSpec,
    JobInput,
    JobSpec,
    LogsRequest,
    MLPlatform,
    ModelRegistration,
    NotFoundError,
    Traffic,
    TrafficUpdate,
    TransientPlatformError,
)
from shared.platform.azureml import AzureMLPlatform
from tests.platform.conftest import (
    SCORING_CODE_ASSET,
    TRAINING_CODE_ASSET,
    _azure_platform,
    azure_platform_on_blobs,
    wait_for_lro_pollers,
)
from tests.platform.fake_arm import WORKSPACE_PATH, FakeAzureML, Recorded

ARM_VERSION = "2025-01-01-preview"  # what azure-ai-ml 1.35.2 sends for job PUTs


def _job(name: str = "train-1", **changes: object) -> JobSpec:
    values: dict[str, object] = {
        "name": name,
        "experiment_name": "fraud-training",
        "compute": "gpu-cluster",
        "code": TRAINING_CODE_ASSET,
        "args": (
            "--data",
            "{inputs.data}",
            "--contract",
            "{inputs.contract}",
            "--output-dir",
            "{outputs}",
            "--lr",
            "0.01",
        ),
        "inputs": {
            "data": JobInput("azureml://datastores/landing/paths/fraud/2026/batch.parquet", "uri_file"),
            "contract": JobInput("azureml://datastores/landing/paths/fraud/contract.json", "uri_file"),
        },
        "instance_type": "Standard_NC4as_T4_v3",
        "instance_count": 2,
        "distribution": "pytorch",
        "processes_per_instance": 1,
        "timeout_seconds": 5400,
        "environment": "azureml:perennial-train:1",
    }
    values.update(changes)
    return JobSpec(**values)  # type: ignore[arg-type]


def _only(fake: FakeAzureML, method: str, suffix: str) -> Recorded:
    found = [r for r in fake.requests if r.method == method and r.path.endswith(suffix)]
    assert len(found) == 1, [(r.method, r.path) for r in fake.requests]
    return found[0]


def test_importing_the_port_does_not_import_azure_ml() -> None:
    code = (
        "import sys, shared.platform, shared.platform.traffic, shared.platform.azureml, shared.platform.local; "
        "print(sorted(m for m in sys.modules if m.startswith(('azure.ai.ml', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_compute_is_an_aml_cluster_that_scales_to_zero(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    state = azure_platform.ensure_compute(ComputeSpec("gpu-cluster", "Standard_NC4as_T4_v3", max_instances=4))
    put = _only(fake_arm, "PUT", "/computes/gpu-cluster")
    assert put.path == f"{WORKSPACE_PATH}/computes/gpu-cluster"
    assert put.api_version
    properties = put.body["properties"]
    assert properties["computeType"] == "AmlCompute"
    assert properties["properties"]["vmSize"] == "Standard_NC4as_T4_v3"
    assert properties["properties"]["scaleSettings"]["minNodeCount"] == 0
    assert properties["properties"]["scaleSettings"]["maxNodeCount"] == 4
    assert (state.min_instances, state.max_instances, state.provisioning_state) == (0, 4, "Succeeded")
    fake_arm.clear()
    azure_platform.ensure_compute(ComputeSpec("gpu-cluster", max_instances=4))
    assert fake_arm.writes() == []  # it exists: nothing is written


def test_command_job_request_matches_the_service(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    azure_platform.submit_job(_job())
    put = _only(fake_arm, "PUT", "/jobs/train-1")
    assert put.path == f"{WORKSPACE_PATH}/jobs/train-1"
    assert put.api_version == ARM_VERSION
    p = put.body["properties"]
    assert p["jobType"] == "Command"
    assert p["experimentName"] == "fraud-training"
    assert p["computeId"].endswith("/computes/gpu-cluster")
    assert p["codeId"].endswith("/codes/perennial-training-code/versions/1")
    assert p["environmentId"].endswith("/environments/perennial-train/versions/1")
    assert p["command"] == (
        "python train.py --data ${{inputs.data}} --contract ${{inputs.contract}} "
        "--output-dir ${{outputs.artifacts}} --lr 0.01"
    )
    assert p["inputs"]["data"] == {
        "uri": "azureml://datastores/landing/paths/fraud/2026/batch.parquet",
        "jobInputType": "uri_file",
    }
    assert p["outputs"]["artifacts"]["jobOutputType"] == "uri_folder"
    assert p["distribution"] == {"distributionType": "PyTorch", "processCountPerInstance": 1}
    assert p["resources"]["instanceCount"] == 2
    # The cluster's VM size decides; instance_type is for Kubernetes and serverless compute only.
    assert "instanceType" not in p["resources"]
    assert p["limits"]["timeout"] == "PT1H30M"
    assert p["tags"]["perennial.kind"] == "training"


def test_args_are_shell_quoted(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    azure_platform.submit_job(_job(args=("--data", "{inputs.data}", "--note", "it's; rm -rf /")))
    command = _only(fake_arm, "PUT", "/jobs/train-1").body["properties"]["command"]
    assert command == "python train.py --data ${{inputs.data}} --note 'it'\"'\"'s; rm -rf /'"


def test_a_429_then_200_succeeds_after_a_retry(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    azure_platform.submit_job(_job())
    fake_arm.clear()
    fake_arm.fail_next("GET", r"/jobs/train-1$", 429, code="TooManyRequests")
    state = azure_platform.get_job("train-1")
    assert state.status == "NotStarted"
    assert [r.method for r in fake_arm.requests if r.path.endswith("/jobs/train-1")] == ["GET", "GET"]


def test_persistent_5xx_becomes_a_transient_error_with_a_hint(
    azure_platform: MLPlatform, fake_arm: FakeAzureML
) -> None:
    fake_arm.fail_next("GET", r"/jobs/train-1$", 503, times=10)
    with pytest.raises(TransientPlatformError, match="503") as error:
        azure_platform.get_job("train-1")
    assert "retry" in error.value.hint
    assert len([r for r in fake_arm.requests if r.path.endswith("/jobs/train-1")]) == 3  # retry_attempts


def test_a_client_error_is_not_retried(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    fake_arm.fail_next("GET", r"/jobs/train-1$", 403, code="AuthorizationFailed")
    with pytest.raises(Exception, match="403") as error:
        azure_platform.get_job("train-1")
    assert "role" in str(error.value)
    assert len([r for r in fake_arm.requests if r.path.endswith("/jobs/train-1")]) == 1


def test_a_missing_job_is_not_found_not_a_crash(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    with pytest.raises(NotFoundError) as error:
        azure_platform.get_job("missing-job")
    assert (error.value.kind, error.value.name) == ("job", "missing-job")
    assert _only(fake_arm, "GET", "/jobs/missing-job").api_version


def test_cancel_posts_to_the_job(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    azure_platform.submit_job(_job())
    fake_arm.set_job_status("train-1", "Running")
    assert azure_platform.cancel_job("train-1").status == "Canceled"
    post = _only(fake_arm, "POST", "/jobs/train-1/cancel")
    assert post.api_version


def test_job_logs_come_from_run_history(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    azure_platform.submit_job(_job())
    fake_arm.log_text["train-1"] = "epoch 1 loss 0.3\nepoch 2 loss 0.2\n"
    assert azure_platform.job_logs(LogsRequest("train-1", tail_lines=1)) == "epoch 2 loss 0.2"


def test_model_is_registered_from_the_job_output(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    azure_platform.submit_job(_job())
    fake_arm.set_job_status("train-1", "Completed")
    fake_arm.clear()
    version = azure_platform.register_model(
        ModelRegistration("fraud", "train-1", tags={"stage": "candidate"}, properties={"metrics.pr_auc": "0.81"})
    )
    put = _only(fake_arm, "PUT", "/models/fraud/versions/1")
    p = put.body["properties"]
    assert p["modelUri"] == "azureml://jobs/train-1/outputs/artifacts"
    assert p["modelType"] == "custom_model"
    assert p["properties"] == {"metrics.pr_auc": "0.81", "perennial.job": "train-1"}
    assert p["tags"] == {"stage": "candidate"}
    assert version.version == "1"


def test_deployment_and_traffic_requests(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    azure_platform.ensure_endpoint(EndpointSpec("fraud-ep"))
    endpoint_put = _only(fake_arm, "PUT", "/onlineEndpoints/fraud-ep")
    assert endpoint_put.body["properties"]["authMode"] == "AADToken"  # Entra ID tokens: no endpoint key exists
    fake_arm.clear()
    spec = DeploymentSpec(
        "fraud-ep", "fraud-v3", "fraud", "3", instance_type="Standard_DS3_v2", instance_count=2, code=SCORING_CODE_ASSET
    )
    azure_platform.create_or_update_deployment(spec)
    p = _only(fake_arm, "PUT", "/onlineEndpoints/fraud-ep/deployments/fraud-v3").body["properties"]
    assert p["endpointComputeType"] == "Managed"
    assert p["model"].endswith("/models/fraud/versions/3")
    assert p["instanceType"] == "Standard_DS3_v2"
    assert p["codeConfiguration"]["scoringScript"] == "score.py"
    assert p["livenessProbe"]["failureThreshold"] == 30
    assert p["readinessProbe"]["period"] == "PT10S"
    sku = _only(fake_arm, "PUT", "/onlineEndpoints/fraud-ep/deployments/fraud-v3").body["sku"]
    assert sku["capacity"] == 2

    azure_platform.create_or_update_deployment(
        DeploymentSpec("fraud-ep", "fraud-v2", "fraud", "2", code=SCORING_CODE_ASSET)
    )
    azure_platform.set_traffic(TrafficUpdate("fraud-ep", Traffic({"fraud-v2": 100})))
    fake_arm.clear()
    azure_platform.set_traffic(TrafficUpdate("fraud-ep", Traffic({"fraud-v2": 90, "fraud-v3": 10})))
    put = _only(fake_arm, "PUT", "/onlineEndpoints/fraud-ep")
    assert put.body["properties"]["traffic"] == {"fraud-v2": 90, "fraud-v3": 10}
    fake_arm.clear()
    azure_platform.set_traffic(TrafficUpdate("fraud-ep", Traffic({"fraud-v2": 100, "fraud-v3": 0}, {"fraud-v3": 20})))
    body = _only(fake_arm, "PUT", "/onlineEndpoints/fraud-ep").body["properties"]
    assert body["traffic"] == {"fraud-v2": 100}  # zeros stripped
    assert body["mirrorTraffic"] == {"fraud-v3": 20}


def test_a_failed_deployment_is_a_typed_error(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    azure_platform.ensure_endpoint(EndpointSpec("fraud-ep"))
    fake_arm.fail_next("PUT", r"/deployments/fraud-v3$", 400, code="BadRequest")
    with pytest.raises(DeploymentFailedError) as error:
        azure_platform.create_or_update_deployment(
            DeploymentSpec("fraud-ep", "fraud-v3", "fraud", "3", code=SCORING_CODE_ASSET)
        )
    assert "deployment_logs" in error.value.hint


def test_a_deployment_is_started_not_waited_for_and_never_sent_twice(fake_arm: FakeAzureML) -> None:
    """Azure provisions a deployment for many minutes, past the host's 30-minute function timeout: the call
    answers "Creating" within its short wait and the orchestrator polls; a retried call sends nothing."""
    azure_platform = _azure_platform(fake_arm, deployment_wait_seconds=0.5)
    azure_platform.ensure_endpoint(EndpointSpec("fraud-ep"))
    fake_arm.slow_provisioning = True
    spec = DeploymentSpec("fraud-ep", "fraud-v3", "fraud", "3", code=SCORING_CODE_ASSET)
    started = time.monotonic()
    state = azure_platform.create_or_update_deployment(spec)
    assert time.monotonic() - started < 10, "it waited for the provisioning"
    assert (state.provisioning_state, state.provisioning) == ("Creating", True)
    fake_arm.clear()
    assert azure_platform.create_or_update_deployment(spec).provisioning  # the activity's retry
    assert not fake_arm.writes(), "a second PUT would start the provisioning again"
    fake_arm.finish_provisioning("fraud-ep", "fraud-v3")
    assert azure_platform.get_deployment(DeploymentRef("fraud-ep", "fraud-v3")).provisioning_state == "Succeeded"
    assert azure_platform.create_or_update_deployment(spec).provisioning_state == "Succeeded"
    assert not fake_arm.writes(), "a ready deployment of the same model and capacity is not sent again"
    scaled = azure_platform.create_or_update_deployment(replace(spec, instance_count=2))
    assert (scaled.provisioning, scaled.instance_count) == (True, 2), "a change of capacity is sent"
    fake_arm.finish_provisioning("fraud-ep", "fraud-v3")
    wait_for_lro_pollers()  # before the state goes non-terminal again, or one would poll for ever
    fake_arm.finish_provisioning("fraud-ep", "fraud-v3", state="Deleting")
    fake_arm.clear()
    with pytest.raises(TransientPlatformError, match="still being deleted"):
        azure_platform.create_or_update_deployment(spec)  # a PUT would meet the deletion
    assert not fake_arm.writes()
    fake_arm.finish_provisioning("fraud-ep", "fraud-v3")


def test_a_deployment_of_a_model_version_azure_does_not_know_says_so(
    azure_platform: MLPlatform, fake_arm: FakeAzureML
) -> None:
    azure_platform.ensure_endpoint(EndpointSpec("fraud-ep"))
    fake_arm.fail_next("PUT", r"/deployments/fraud-v9$", 404, code="ModelNotFound")
    with pytest.raises(NotFoundError) as error:
        azure_platform.create_or_update_deployment(
            DeploymentSpec("fraud-ep", "fraud-v9", "fraud", "9", code=SCORING_CODE_ASSET)
        )
    assert (error.value.kind, error.value.name) == ("model version", "fraud:9")
    with pytest.raises(NotFoundError) as missing:  # no endpoint: the SDK's read of it is the 404
        azure_platform.create_or_update_deployment(
            DeploymentSpec("other-ep", "fraud-v9", "fraud", "9", code=SCORING_CODE_ASSET)
        )
    assert (missing.value.kind, missing.value.name) == ("endpoint", "other-ep")


def test_metrics_query_the_endpoint_resource_in_its_region(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    from shared.platform import MetricsQuery
    from tests.platform.test_contract import azure_monitor_answer

    start = datetime.now(UTC) - timedelta(minutes=5)
    fake_arm.metrics = azure_monitor_answer(start, requests_2xx=190, requests_5xx=10, p95=80.0)
    metrics = azure_platform.deployment_metrics(MetricsQuery("fraud-ep", "blue", start, datetime.now(UTC)))
    posts = [r for r in fake_arm.requests if r.path.endswith("/metrics:getBatch")]
    assert len(posts) == 2
    assert all(r.host == "westeurope.metrics.monitor.azure.com" for r in posts)
    assert posts[0].body["resourceids"][0].endswith("/onlineEndpoints/fraud-ep")
    assert posts[0].query["metricnamespace"] == ["Microsoft.MachineLearningServices/workspaces/onlineEndpoints"]
    assert "deployment eq 'blue'" in posts[0].query["filter"][0]
    # The fake answers only what was asked for: these are what the numbers below come from.
    requests, latency = sorted(posts, key=lambda r: r.query["metricnames"][0], reverse=True)
    assert (requests.query["metricnames"], requests.query["aggregation"]) == (["RequestsPerMinute"], ["Total"])
    assert "statusCodeClass eq '*'" in requests.query["filter"][0]  # split by status class: 5xx are the errors
    assert latency.query["metricnames"] == ["RequestLatency_P50,RequestLatency_P95,RequestLatency_P99"]
    assert latency.query["aggregation"] == ["Average"]
    assert (metrics.requests, metrics.errors, metrics.error_rate) == (200, 10, 0.05)
    assert metrics.p95_ms == pytest.approx(80.0)
    assert metrics.p50_ms == pytest.approx(40.0)
    assert not metrics.has_samples


def test_metrics_keep_each_minutes_p95_for_the_canary(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    """The per-minute p95s come back as windows with their request counts; the bake's p95 stays the
    request-weighted mean. A minute without requests, or without a p95 value, is no window."""
    from shared.platform import MetricsQuery
    from tests.platform.test_contract import azure_monitor_minutes

    start = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
    minutes: list[tuple[int, int, float | None]] = [(90, 10, 80.0), (0, 0, 55.0), (300, 0, 120.0), (40, 0, None)]
    fake_arm.metrics = azure_monitor_minutes(start, minutes)
    metrics = azure_platform.deployment_metrics(MetricsQuery("fraud-ep", "blue", start, start + timedelta(minutes=4)))
    first = start.replace(second=0)
    assert [(w.start, w.seconds, w.requests, w.p95_ms) for w in metrics.p95_windows] == [
        (first, 60.0, 100, 80.0),
        (first + timedelta(minutes=2), 60.0, 300, 120.0),
    ]
    assert (metrics.requests, metrics.errors) == (440, 10)
    assert metrics.p95_ms == pytest.approx((100 * 80.0 + 1 * 55.0 + 300 * 120.0) / 401)  # unchanged rule
    assert not metrics.has_samples


def test_experiment_name_is_always_sent(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    assert isinstance(azure_platform, AzureMLPlatform)
    azure_platform.submit_job(_job(name="eval-1", kind="evaluation", experiment_name="fraud-evaluation"))
    body = _only(fake_arm, "PUT", "/jobs/eval-1").body["properties"]
    assert body["experimentName"] == "fraud-evaluation"
    assert body["tags"]["perennial.kind"] == "evaluation"


@pytest.mark.azurite
def test_job_outputs_are_read_from_the_workspace_datastore(
    fake_arm: FakeAzureML, azurite_connection_string: str
) -> None:
    from azure.storage.blob import BlobServiceClient

    from shared.platform import InvalidRequestError, JobOutputRequest
    from tests.platform.fake_arm import OUTPUTS_CONTAINER

    blobs = BlobServiceClient.from_connection_string(azurite_connection_string)
    container = blobs.get_container_client(OUTPUTS_CONTAINER)
    if not container.exists():
        container.create_container()
    container.upload_blob("perennial/jobs/train-1/artifacts/metrics.json", b'{"pr_auc": 0.8}', overwrite=True)
    asked: list[str] = []
    platform = azure_platform_on_blobs(fake_arm, blobs, asked)
    platform.submit_job(_job())
    output = _only(fake_arm, "PUT", "/jobs/train-1").body["properties"]["outputs"]["artifacts"]
    assert output["uri"] == "azureml://datastores/workspaceblobstore/paths/perennial/jobs/train-1/artifacts/"
    with pytest.raises(InvalidRequestError, match="ended"):
        platform.read_job_output(JobOutputRequest("train-1", "metrics.json"))
    fake_arm.set_job_status("train-1", "Completed")
    assert platform.read_job_output(JobOutputRequest("train-1", "metrics.json")) == b'{"pr_auc": 0.8}'
    assert asked == ["https://devstoreaccount1.blob.core.windows.net"]
    with pytest.raises(NotFoundError):
        platform.read_job_output(JobOutputRequest("train-1", "comparison.json"))
    with pytest.raises(InvalidRequestError):
        platform.read_job_output(JobOutputRequest("train-1", "../train-2/artifacts/metrics.json"))
