"""A stateful fake of the Azure ML (ARM + data-plane) and Azure Monitor services, as an azure-core transport.

The real ``MLClient`` and ``MetricsClient`` send their real requests through it: PUT bodies are
stored (with ``id``, ``name`` and a provisioning/job status added) and returned on GET, so the
adapter is tested against what the SDK actually sends. Every request is recorded for assertions;
``fail_next`` queues canned error answers (429, 500, 404, a plain-text gateway page, a dropped connection)
for the retry and error tests.

Answers that let a test fail when the adapter asks for the wrong thing: metrics:getBatch returns only the
requested metrics, with only the requested aggregations, of the deployment in the filter; a scoring request
goes to the deployment its ``azureml-model-deployment`` header pins (else one the endpoint's traffic split
picks), needs a bearer token for the endpoint's auth mode, and the answer names the deployment in that header.
"""

from __future__ import annotations

import io
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
import urllib3
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline.transport import HttpTransport, RequestsTransportResponse
from azure.core.rest import HttpRequest as RestHttpRequest
from azure.core.rest._requests_basic import RestRequestsTransportResponse

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
RESOURCE_GROUP = "rg-perennial-test"
WORKSPACE = "mlw-perennial-test"
LOCATION = "westeurope"
WORKSPACE_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
    f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
)
API_HOST = f"{LOCATION}.api.azureml.ms"
OUTPUTS_CONTAINER = "azureml-blobstore-perennial"


def fake_token(*scopes: str) -> str:
    """The token FakeCredential hands out: it names its scopes, so the fake service can check the audience."""
    return "fake-token for " + " ".join(scopes)


class FakeCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(fake_token(*scopes), 4_102_444_800)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(fake_token(*scopes), 4_102_444_800)


#: The audience of an aad_token online endpoint's scoring URI.
SCORING_SCOPE = "https://ml.azure.com/.default"
ENDPOINT_KEY = "fake-primary-key"


@dataclass
class Recorded:
    method: str
    url: str
    host: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # what the transport was told (timeouts, stream)

    @property
    def api_version(self) -> str | None:
        values = self.query.get("api-version")
        return values[0] if values else None

    @property
    def writes(self) -> bool:
        return self.method in ("PUT", "POST", "PATCH", "DELETE") and not self.path.endswith(
            ("/listKeys", "/getLogs", "metrics:getBatch", "/score")
        )


@dataclass
class Failure:
    method: str
    path_pattern: str
    status: int
    remaining: int
    code: str = "ServiceError"
    text: str | None = None  # a plain-text body instead of the JSON error
    exception: Exception | None = None  # raised by the transport instead of answering (no response at all)


@dataclass
class FakeAzureML(HttpTransport):  # type: ignore[type-arg]
    """The transport. ``resources`` maps ARM paths (lower-cased) to stored JSON documents."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    run_errors: dict[str, str] = field(default_factory=dict)
    log_text: dict[str, str] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    #: Deployments PUT while this is set stay "Creating" (as Azure's do, for many minutes) until
    #: :meth:`finish_provisioning`; the answer is 201 and the SDK's poller polls the resource.
    slow_provisioning: bool = False
    _score_counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # Stand-ins for the two environments infra/modules/ml.bicep declares (versions named by a hash
        # of image + conda file there; "1" here), so the adapter's "name@latest" resolves.
        for name in ("perennial-train", "perennial-score"):
            path = f"{WORKSPACE_PATH}/environments/{name}/versions/1"
            self.resources[self._key(path)] = {
                "id": path,
                "name": "1",
                "properties": {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"},
            }

        # The workspace's default blob datastore (job outputs are read from it).
        path = f"{WORKSPACE_PATH}/datastores/workspaceblobstore"
        self.resources[self._key(path)] = {
            "id": path,
            "name": "workspaceblobstore",
            "properties": {
                "datastoreType": "AzureBlob",
                "accountName": "devstoreaccount1",
                "containerName": OUTPUTS_CONTAINER,
                "endpoint": "core.windows.net",
                "protocol": "https",
                "credentials": {"credentialsType": "None"},
                "isDefault": True,
            },
            "systemData": _system_data(),
        }

    # ------------------------------------------------------------------ test controls

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        times: int = 1,
        code: str = "ServiceError",
        *,
        text: str | None = None,
        exception: Exception | None = None,
    ) -> None:
        self.failures.append(Failure(method, path_pattern, status, times, code, text, exception))

    def finish_provisioning(self, endpoint: str, deployment: str, state: str = "Succeeded") -> None:
        key = self._key(f"{WORKSPACE_PATH}/onlineEndpoints/{endpoint}/deployments/{deployment}")
        self.resources[key]["properties"]["provisioningState"] = state

    def set_job_status(self, name: str, status: str, error: str | None = None) -> None:
        job = self.resources[self._key(f"{WORKSPACE_PATH}/jobs/{name}")]
        job["properties"]["status"] = status
        if error:
            self.run_errors[name] = error

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.writes]

    def clear(self) -> None:
        self.requests.clear()

    # ------------------------------------------------------------------ transport protocol

    def __enter__(self) -> FakeAzureML:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: Any, **kwargs: Any) -> Any:
        with self._lock:
            parsed = urlparse(request.url)
            raw = request.content if isinstance(request, RestHttpRequest) else request.data
            if isinstance(raw, bytes | bytearray):
                raw = raw.decode()
            try:
                body = json.loads(raw) if raw else None
            except (TypeError, ValueError):
                body = raw
            record = Recorded(
                request.method,
                request.url,
                parsed.netloc,
                parsed.path,
                parse_qs(parsed.query),
                body,
                {k.lower(): v for k, v in request.headers.items()},
                dict(kwargs),
            )
            self.requests.append(record)
            status, document, headers = self._answer(record)
        return _response(request, status, document, headers, stream=bool(kwargs.get("stream", False)))

    # ------------------------------------------------------------------ the fake service

    @staticmethod
    def _key(path: str) -> str:
        return path.rstrip("/").lower()

    def _error(self, status: int, code: str, message: str) -> tuple[int, Any, dict[str, str]]:
        return status, {"error": {"code": code, "message": message}}, {}

    def _answer(self, r: Recorded) -> tuple[int, Any, dict[str, str]]:
        for failure in self.failures:
            if failure.remaining > 0 and failure.method == r.method and re.search(failure.path_pattern, r.path):
                failure.remaining -= 1
                if failure.exception is not None:
                    raise failure.exception
                headers = {"Retry-After": "0"} if failure.status == 429 else {}
                if failure.text is not None:
                    return failure.status, failure.text, {**headers, "Content-Type": "text/plain"}
                status, document, _ = self._error(failure.status, failure.code, f"injected {failure.status}")
                return status, document, headers
        if r.host.endswith(".inference.ml.azure.com"):
            return self._score(r)
        if r.host.endswith(".metrics.monitor.azure.com"):
            return self._metrics(r)
        if r.host == API_HOST:
            return self._data_plane(r)
        path = r.path
        key = self._key(path)
        ws = self._key(WORKSPACE_PATH)
        if key == ws:
            return 200, self._workspace(), {}
        if not key.startswith(ws + "/"):
            return self._error(404, "ResourceNotFound", f"no resource at {path}")
        if r.method == "POST":
            return self._action(r, key)
        if r.method == "PUT":
            return self._put(r, key)
        if r.method == "DELETE":
            if self.resources.pop(key, None) is None:
                return self._error(404, "ResourceNotFound", f"{path} does not exist")
            return 200, None, {}
        if r.method == "GET":
            if key in self.resources:
                return 200, self.resources[key], {}
            if re.search(r"/(models|codes|environments)/[^/]+$", key):
                return self._container(key)
            children = self._children(key)
            if children is not None:
                return 200, {"value": children}, {}
            return self._error(404, "ResourceNotFound", f"{path} does not exist")
        return self._error(405, "MethodNotAllowed", r.method)

    def _container(self, key: str) -> tuple[int, Any, dict[str, str]]:
        """An asset container (model, code, environment): exists once it has a version; knows the next one."""
        versions = [int(v["name"]) for k, v in self.resources.items() if k.startswith(key + "/versions/")]
        if not versions:
            return self._error(404, "ResourceNotFound", f"{key} has no versions")
        name = key.rsplit("/", 1)[-1]
        properties = {"latestVersion": str(max(versions)), "nextVersion": str(max(versions) + 1)}
        return 200, {"id": key, "name": name, "properties": properties, "systemData": _system_data()}, {}

    def _workspace(self) -> dict[str, Any]:
        return {
            "id": WORKSPACE_PATH,
            "name": WORKSPACE,
            "location": LOCATION,
            "type": "Microsoft.MachineLearningServices/workspaces",
            "properties": {"discoveryUrl": f"https://{API_HOST}/discovery", "mlFlowTrackingUri": ""},
        }

    def _children(self, key: str) -> list[dict[str, Any]] | None:
        """A list GET: the collection's direct children, or None when ``key`` is not a known collection."""
        kinds = ("/jobs", "/computes", "/versions", "/onlineendpoints", "/deployments", "/models", "/environments")
        if not key.endswith(kinds):
            return None
        depth = key.count("/") + 1
        found = [v for k, v in self.resources.items() if k.startswith(key + "/") and k.count("/") == depth]
        if key.endswith("/versions"):
            found.sort(key=lambda v: int(v["name"]), reverse=True)
        return found

    def _put(self, r: Recorded, key: str) -> tuple[int, Any, dict[str, str]]:
        document = dict(r.body or {})
        properties = dict(document.get("properties") or {})
        document["id"] = r.path
        document["name"] = r.path.rstrip("/").rsplit("/", 1)[-1]
        document.setdefault("systemData", _system_data())
        if "/jobs/" in key:
            properties.setdefault("status", "NotStarted")
            properties.setdefault("services", {"Studio": {"endpoint": f"https://ml.azure.com/runs/{document['name']}"}})
        elif "/versions/" in key:
            properties.setdefault("flavors", {})
        else:
            properties["provisioningState"] = "Succeeded"
        if "/onlineendpoints/" in key and "/deployments/" not in key:
            name = document["name"]
            properties["scoringUri"] = f"https://{name}.{LOCATION}.inference.ml.azure.com/score"
            properties.setdefault("authMode", "Key")
        if "/deployments/" in key:
            properties.setdefault("scaleSettings", {"scaleType": "Default"})
        if "/computes/" in key:
            properties.setdefault("properties", {}).setdefault("scaleSettings", {})
        document["properties"] = properties
        self.resources[key] = document
        if "/deployments/" in key and self.slow_provisioning:
            properties["provisioningState"] = "Creating"
            return 201, document, {}
        return 200, document, {}

    def _action(self, r: Recorded, key: str) -> tuple[int, Any, dict[str, str]]:
        target, _, action = key.rpartition("/")
        if target not in self.resources:
            return self._error(404, "ResourceNotFound", f"{target} does not exist")
        if action == "cancel":
            self.resources[target]["properties"]["status"] = "Canceled"
            return 200, None, {}
        if action == "listkeys":
            return 200, {"primaryKey": ENDPOINT_KEY, "secondaryKey": "fake-secondary-key"}, {}
        if action == "getlogs":
            name = target.rsplit("/", 1)[-1]
            return 200, {"content": self.log_text.get(name, f"logs of {name}")}, {}
        return self._error(400, "BadRequest", f"unknown action {action}")

    def _data_plane(self, r: Recorded) -> tuple[int, Any, dict[str, str]]:
        if r.path == "/discovery":
            base = f"https://{API_HOST}"
            return (
                200,
                {"api": base, "catalog": base, "experimentation": base, "history": base, "modelmanagement": base},
                {},
            )
        match = re.search(r"/runs/([^/]+)/details$", r.path)
        if match:
            name = match.group(1)
            job = self.resources.get(self._key(f"{WORKSPACE_PATH}/jobs/{name}"))
            if job is None:
                return self._error(404, "NotFound", f"run {name} does not exist")
            details: dict[str, Any] = {
                "runId": name,
                "status": job["properties"]["status"],
                "logFiles": {"user_logs/std_log.txt": f"https://{API_HOST}/logs/{name}/std_log.txt"},
            }
            if name in self.run_errors:
                details["error"] = {"error": {"code": "UserError", "message": self.run_errors[name]}}
            return 200, details, {}
        match = re.search(r"^/logs/([^/]+)/std_log.txt$", r.path)
        if match:
            return 200, self.log_text.get(match.group(1), ""), {"Content-Type": "text/plain"}
        return self._error(404, "NotFound", r.path)

    def _score(self, r: Recorded) -> tuple[int, Any, dict[str, str]]:
        """A managed online endpoint's scoring URI: auth, then routing by the pin or the traffic split."""
        name = r.host.split(".", 1)[0]
        endpoint = self.resources.get(self._key(f"{WORKSPACE_PATH}/onlineEndpoints/{name}"))
        if endpoint is None or r.method != "POST" or r.path != "/score":
            return 404, f"no endpoint answers {r.method} {r.url}", {"Content-Type": "text/plain"}
        properties = endpoint["properties"]
        auth_mode = str(properties.get("authMode", "Key")).lower()
        expected = fake_token(SCORING_SCOPE) if auth_mode == "aadtoken" else ENDPOINT_KEY
        if r.headers.get("authorization") != f"Bearer {expected}":
            return 401, f"{auth_mode} endpoint: missing or wrong bearer token", {"Content-Type": "text/plain"}
        prefix = self._key(f"{WORKSPACE_PATH}/onlineEndpoints/{name}/deployments") + "/"
        deployments = {
            k[len(prefix) :]: str(v["name"])
            for k, v in self.resources.items()
            if k.startswith(prefix) and "/" not in k[len(prefix) :]
        }
        pinned = r.headers.get("azureml-model-deployment")
        if pinned is not None:
            deployment = deployments.get(pinned.lower())
        else:
            deployment = self._route(name, properties.get("traffic") or {})
        if deployment is None:
            message = f"deployment {pinned!r} not found" if pinned else "No valid deployments to route to"
            return 404, message, {"Content-Type": "text/plain"}
        rows = (r.body or {}).get("data", []) if isinstance(r.body, dict) else []
        predictions = [{"class": "0", "probability": 0.1} for _ in rows]
        return 200, {"predictions": predictions, "model_version": "fake"}, {"azureml-model-deployment": deployment}

    def _route(self, endpoint: str, traffic: dict[str, int]) -> str | None:
        """The live traffic split, deterministically: request n goes to the deployment whose share covers n % 100."""
        count = self._score_counts.get(endpoint, 0)
        self._score_counts[endpoint] = count + 1
        slot, covered = count % 100, 0
        for deployment, share in sorted(traffic.items()):
            covered += int(share)
            if slot < covered:
                return deployment
        return None

    def _metrics(self, r: Recorded) -> tuple[int, Any, dict[str, str]]:
        """metrics:getBatch: of the stored series, only the requested metrics of the filtered deployment, and in
        each point only the requested aggregations, for each requested resource (as Azure Monitor answers)."""
        names = {n for n in ",".join(r.query.get("metricnames", [])).split(",") if n}
        aggregations = {a.strip().lower() for a in ",".join(r.query.get("aggregation", [])).split(",") if a.strip()}
        match = re.search(r"deployment eq '((?:[^']|'')*)'", " ".join(r.query.get("filter", [])))
        deployment = match.group(1).replace("''", "'") if match else None
        merged: dict[str, dict[str, Any]] = {}
        for entry in self.metrics:
            for metric in entry["value"]:
                name = metric["name"]["value"]
                if name not in names:
                    continue
                answer = merged.setdefault(name, {**metric, "timeseries": []})
                for series in metric["timeseries"]:
                    dims = {str(d["name"]["value"]).lower(): d["value"] for d in series.get("metadatavalues", [])}
                    if deployment is not None and dims.get("deployment", deployment) != deployment:
                        continue
                    data = [
                        {k: v for k, v in point.items() if k == "timeStamp" or k in aggregations}
                        for point in series["data"]
                    ]
                    answer["timeseries"].append({**series, "data": data})
        if not self.metrics:
            return 200, {"values": []}, {}
        timing = {k: v for k, v in self.metrics[0].items() if k != "value"}
        resources = (r.body or {}).get("resourceids", []) if isinstance(r.body, dict) else []
        values = [{**timing, "resourceid": rid, "value": list(merged.values())} for rid in resources]
        return 200, {"values": values}, {}


def _system_data() -> dict[str, str]:
    return {"createdAt": "2026-01-01T00:00:00Z", "lastModifiedAt": "2026-01-01T00:00:00Z"}


def _response(request: Any, status: int, document: Any, headers: dict[str, str], stream: bool = False) -> Any:
    if document is None:
        data = b""
    elif isinstance(document, str):
        data = document.encode()
    else:
        data = json.dumps(document).encode()
    all_headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}
    inner = requests.Response()
    inner.status_code = status
    inner.headers.update(all_headers)
    inner.url = request.url
    inner.reason = "OK" if status < 400 else "Error"
    inner.raw = urllib3.HTTPResponse(
        body=io.BytesIO(data), headers=all_headers, status=status, preload_content=False, decode_content=False
    )
    if isinstance(request, RestHttpRequest):
        response = RestRequestsTransportResponse(request=request, internal_response=inner)  # type: ignore[no-untyped-call]
        if not stream:
            response.read()  # as azure-core's RequestsTransport does for a non-streamed request
        return response
    return RequestsTransportResponse(request, inner)
