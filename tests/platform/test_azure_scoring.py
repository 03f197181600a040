"""The Azure adapter's scoring calls and job-log downloads, through the real SDK and the fake transport.

invoke posts to the endpoint's scoring URI itself (not through ``online_endpoints.invoke``, whose header
dict is shared module-wide): these tests pin down the request it sends and how each answer comes back.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseTimeoutError

from shared.platform import (
    DeploymentSpec,
    EndpointSpec,
    InvokeRequest,
    JobSpec,
    LogsRequest,
    MLPlatform,
    NotFoundError,
    PlatformError,
    Traffic,
    TrafficUpdate,
    TransientPlatformError,
)
from tests.platform.conftest import SCORING_CODE_ASSET, TRAINING_CODE_ASSET
from tests.platform.fake_arm import SCORING_SCOPE, WORKSPACE_PATH, FakeAzureML, Recorded, fake_token

ENDPOINT = "fraud-ep"
PAYLOAD = {"data": [{"amount": 0.5}, {"amount": 0.1}]}
GATEWAY_PAGE = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"


def _blue_green(platform: MLPlatform, fake: FakeAzureML) -> None:
    """blue (v1) takes all live traffic; green (v2) none."""
    for version in ("1", "2"):
        path = f"{WORKSPACE_PATH}/models/fraud/versions/{version}"
        fake.resources[path.lower()] = {
            "id": path,
            "name": version,
            "properties": {"flavors": {}, "modelUri": "azureml://jobs/x/outputs/artifacts"},
            "systemData": {"createdAt": "2026-01-01T00:00:00Z"},
        }
    platform.ensure_endpoint(EndpointSpec(ENDPOINT))
    for name, version in (("blue", "1"), ("green", "2")):
        platform.create_or_update_deployment(DeploymentSpec(ENDPOINT, name, "fraud", version, code=SCORING_CODE_ASSET))
    platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100})))
    fake.clear()


def _scores(fake: FakeAzureML) -> list[Recorded]:
    return [r for r in fake.requests if r.host.endswith(".inference.ml.azure.com")]


def test_a_pin_holds_for_its_own_call_only(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    """The SDK's invoke wrote the pin into a module-level dict: every later call stayed pinned."""
    _blue_green(azure_platform, fake_arm)
    pinned = azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD, deployment="green"))
    split = azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD))
    assert (pinned.status_code, pinned.deployment) == (200, "green")
    assert (split.status_code, split.deployment) == (200, "blue")  # the split (blue 100), as the service said
    first, second = _scores(fake_arm)
    assert first.headers["azureml-model-deployment"] == "green"
    assert "azureml-model-deployment" not in second.headers
    assert first.url == f"https://{ENDPOINT}.westeurope.inference.ml.azure.com/score"
    assert first.body == PAYLOAD


def test_concurrent_pins_do_not_swap(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    """One platform object serves every activity thread (maxConcurrentActivityFunctions 8)."""
    _blue_green(azure_platform, fake_arm)
    pins = [("blue", "green", None)[i % 3] for i in range(48)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda pin: azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD, pin)), pins))
    assert [r.deployment for r in results] == [pin or "blue" for pin in pins]
    assert sorted(r.headers.get("azureml-model-deployment", "-") for r in _scores(fake_arm)) == sorted(
        pin or "-" for pin in pins
    )


def test_scoring_carries_an_entra_id_token_for_azure_ml(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    _blue_green(azure_platform, fake_arm)
    assert azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD)).status_code == 200
    (score,) = _scores(fake_arm)
    assert SCORING_SCOPE == "https://ml.azure.com/.default"
    assert score.headers["authorization"] == f"Bearer {fake_token(SCORING_SCOPE)}"
    assert not [r for r in fake_arm.requests if r.path.endswith("/listKeys")]  # an aad_token endpoint has no keys


def test_a_key_endpoint_is_scored_with_its_key(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    """Endpoints made elsewhere may use keys; the fake answers 401 to anything but the primary key."""
    _blue_green(azure_platform, fake_arm)
    fake_arm.resources[f"{WORKSPACE_PATH}/onlineEndpoints/{ENDPOINT}".lower()]["properties"]["authMode"] = "Key"
    assert azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD, deployment="green")).status_code == 200
    assert len([r for r in fake_arm.requests if r.path.endswith("/listKeys")]) == 1


def test_the_timeout_reaches_the_transport(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    _blue_green(azure_platform, fake_arm)
    azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD, deployment="blue", timeout_seconds=2.5))
    (score,) = _scores(fake_arm)
    assert score.options["read_timeout"] == 2.5
    assert score.options["connection_timeout"] == 2.5


def test_a_plain_text_gateway_error_is_a_result_after_retries(
    azure_platform: MLPlatform, fake_arm: FakeAzureML
) -> None:
    """A 502 page is not JSON: the SDK raised MlException, mapped to "fix the request" and never retried."""
    _blue_green(azure_platform, fake_arm)
    fake_arm.fail_next("POST", r"^/score$", 502, times=10, text=GATEWAY_PAGE)
    result = azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD, deployment="green"))
    assert (result.status_code, result.body) == (502, GATEWAY_PAGE)
    assert result.deployment == "green"  # no header in a gateway's answer: the pin
    assert len(_scores(fake_arm)) == 3  # retry_attempts


def test_a_503_then_a_200_is_the_200(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    _blue_green(azure_platform, fake_arm)
    fake_arm.fail_next("POST", r"^/score$", 503, text="Service Unavailable")
    result = azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD))
    assert (result.status_code, result.deployment, len(result.body["predictions"])) == (200, "blue", 2)
    assert len(_scores(fake_arm)) == 2


def test_the_models_own_error_comes_back_at_once(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    """A 500 is score.py's answer: retrying a crashing model changes nothing."""
    _blue_green(azure_platform, fake_arm)
    fake_arm.fail_next("POST", r"^/score$", 500, code="ModelError")
    result = azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD, deployment="green"))
    assert result.status_code == 500
    assert result.body["error"]["code"] == "ModelError"
    assert len(_scores(fake_arm)) == 1


def test_a_missing_pinned_deployment_is_the_services_404(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    _blue_green(azure_platform, fake_arm)
    result = azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD, deployment="purple"))
    assert result.status_code == 404
    assert "purple" in result.body


@pytest.mark.parametrize(
    "error", [ServiceResponseTimeoutError("read timed out"), ServiceRequestError("connection refused")]
)
def test_a_timeout_or_a_dropped_connection_is_transient(
    azure_platform: MLPlatform, fake_arm: FakeAzureML, error: Exception
) -> None:
    _blue_green(azure_platform, fake_arm)
    fake_arm.fail_next("POST", r"^/score$", 0, times=10, exception=error)
    with pytest.raises(TransientPlatformError, match=str(error)):
        azure_platform.invoke(InvokeRequest(ENDPOINT, PAYLOAD, deployment="green", timeout_seconds=1))
    assert len(_scores(fake_arm)) == 3


def test_a_missing_endpoint_is_not_found(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    with pytest.raises(NotFoundError) as error:
        azure_platform.invoke(InvokeRequest("no-such-ep", PAYLOAD))
    assert (error.value.kind, error.value.name) == ("endpoint", "no-such-ep")
    assert _scores(fake_arm) == []


# ------------------------------------------------------------------------- job logs

STORAGE_403 = (
    '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code>'
    "<Message>This request is not authorized to perform this operation using this permission.</Message></Error>"
)


def _job_with_logs(platform: MLPlatform, fake: FakeAzureML) -> None:
    platform.submit_job(
        JobSpec(name="train-1", experiment_name="fraud", compute="cpu", code=TRAINING_CODE_ASSET, timeout_seconds=60)
    )
    fake.log_text["train-1"] = "epoch 1\nepoch 2\n"


def test_a_storage_error_page_is_an_error_not_the_log(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    _job_with_logs(azure_platform, fake_arm)
    fake_arm.fail_next("GET", r"^/logs/", 403, text=STORAGE_403)
    with pytest.raises(PlatformError, match="403") as error:
        azure_platform.job_logs(LogsRequest("train-1"))
    assert "AuthorizationPermissionMismatch" in error.value.message
    assert "role" in error.value.hint
    assert len([r for r in fake_arm.requests if r.path.startswith("/logs/")]) == 1  # a 403 is not retried


def test_a_missing_log_file_is_not_found(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    _job_with_logs(azure_platform, fake_arm)
    fake_arm.fail_next("GET", r"^/logs/", 404, text="BlobNotFound")
    with pytest.raises(NotFoundError) as error:
        azure_platform.job_logs(LogsRequest("train-1"))
    assert (error.value.kind, error.value.name) == ("job log", "train-1/user_logs/std_log.txt")


def test_a_storage_5xx_that_persists_is_transient(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    _job_with_logs(azure_platform, fake_arm)
    fake_arm.fail_next("GET", r"^/logs/", 503, times=100, text="Server Busy")
    with pytest.raises(TransientPlatformError, match="503"):
        azure_platform.job_logs(LogsRequest("train-1"))
    fake_arm.failures.clear()
    assert azure_platform.job_logs(LogsRequest("train-1")) == "epoch 1\nepoch 2"
