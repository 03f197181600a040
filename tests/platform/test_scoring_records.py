"""Scoring records: request ids and per-request logs (local router), the data collector's output (Azure)."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.platform import (
    MAX_INPUT_ROWS,
    ComputeSpec,
    DeploymentSpec,
    EndpointSpec,
    MLPlatform,
    ModelRegistration,
    ScoringQuery,
    ScoringRecord,
    Traffic,
    TrafficUpdate,
)
from shared.platform.local import LocalPlatform
from shared.platform.scoring import (
    CollectedRequests,
    RequestSample,
    bounded_inputs,
    class_text,
    collector_prefixes,
    parse_collector_line,
    payload_rows,
    request_id_from,
    response_predictions,
    sample_priority,
)
from tests.platform.conftest import SCORING_CODE_ASSET, Harness, azure_platform_on_blobs
from tests.platform.fake_arm import OUTPUTS_CONTAINER, FakeAzureML

ENDPOINT = "fraud-ep"


# ------------------------------------------------------------------------- pure helpers


def test_a_sane_client_request_id_is_kept_and_anything_else_replaced() -> None:
    headers = {"x-ms-client-request-id": "abc-123", "x-request-id": "other"}
    assert request_id_from(headers.get) == "abc-123"
    assert request_id_from({"x-request-id": "req:42"}.get) == "req:42"
    for bad in ("", "has space", "x" * 129, "tab\there", 'quote"'):
        generated = request_id_from({"x-request-id": bad}.get)
        assert str(uuid.UUID(generated)) == generated


def test_payload_rows_accept_every_envelope_score_py_accepts() -> None:
    assert payload_rows({"data": [{"a": 1}]}) == [{"a": 1}]
    assert payload_rows({"input_data": [{"a": 1}]}) == [{"a": 1}]
    assert payload_rows({"input_data": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}) == [
        {"a": 1, "b": 2},
        {"a": 3, "b": 4},
    ]
    assert payload_rows({"rows": []}) == []
    assert payload_rows([1, 2]) == []


def test_inputs_are_bounded_in_rows_columns_and_text() -> None:
    rows = [{"amount": float(i), "note": "n" * 1000, "nested": {"x": 1}, "bad": float("nan")} for i in range(250)]
    kept = bounded_inputs(rows)
    assert len(kept) == MAX_INPUT_ROWS
    assert kept[3] == {"amount": 3.0, "note": "n" * 256, "nested": None, "bad": None}
    wide = bounded_inputs([{f"c{i}": i for i in range(500)}])
    assert len(wide[0]) == 200


def test_predictions_and_class_spellings() -> None:
    classes, probabilities = response_predictions(
        {"predictions": [{"class": 1, "probability": 0.9}, {"class": "0", "probability": 2.0}, {"nothing": 1}]}
    )
    assert classes == ["1", "0"]
    assert probabilities == [0.9, None]
    assert [class_text(v) for v in (1, 1.0, "1", " 1.0 ", True, "TRUE", "fraud", 0.5)] == [
        "1",
        "1",
        "1",
        "1",
        "true",
        "true",
        "fraud",
        "0.5",
    ]


# ------------------------------------------------------------------------- the local router


def _serve(platform: LocalPlatform, tmp_path: Path) -> tuple[int, str]:
    """An endpoint with blue (threshold 0.5) live and green (threshold 0.9) mirrored at 50%."""
    h = Harness("local", platform, tmp_path)
    platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
    platform.ensure_endpoint(EndpointSpec(ENDPOINT))
    for name, threshold in (("blue", 0.5), ("green", 0.9)):
        platform.submit_job(h.job_spec(f"train-{name}", gated=False, lr=threshold))
        assert h.wait(f"train-{name}").status == "Completed"
        version = platform.register_model(ModelRegistration("fraud", f"train-{name}")).version
        platform.create_or_update_deployment(DeploymentSpec(ENDPOINT, name, "fraud", version, code="fixtures"))
    platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic({"blue": 100}, {"green": 50})))
    uri, key = platform.scoring_address(ENDPOINT)
    return int(uri.split(":")[2].split("/")[0]), key


def _post(port: int, key: str, payload: object, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        "/score",
        body=json.dumps(payload),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}", **(headers or {})},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_the_router_answers_with_a_request_id_and_records_inputs_and_predictions(
    local_platform: LocalPlatform, tmp_path: Path
) -> None:
    port, key = _serve(local_platform, tmp_path)
    start = datetime.now(UTC) - timedelta(seconds=1)

    mine = _post(
        port, key, {"data": [{"amount": 0.7, "merchant": "m1"}, {"amount": 0.1}]}, {"x-ms-client-request-id": "order-1"}
    )
    assert mine.status == 200
    assert mine.getheader("x-request-id") == "order-1"
    assert mine.getheader("x-ms-client-request-id") == "order-1"
    assert (
        _post(port, key, {"data": [{"amount": 0.2}]}, {"x-request-id": "order-2"}).getheader("x-request-id")
        == "order-2"
    )
    generated = _post(port, key, {"data": [{"amount": 0.3}]}).getheader("x-request-id")
    assert generated is not None
    assert str(uuid.UUID(generated)) == generated
    many = _post(port, key, {"data": [{"amount": 0.01 * i} for i in range(150)]}, {"x-request-id": "big"})
    assert many.status == 200
    bad = _post(port, key, {"data": [{"amount": "lots"}]}, {"x-request-id": "bad-1"})
    assert (bad.status, bad.getheader("x-request-id")) == (400, "bad-1")
    missing = _post(port, key, {"data": [{"amount": 1}]}, {"azureml-model-deployment": "purple", "x-request-id": "p"})
    assert (missing.status, missing.getheader("x-request-id")) == (404, "p")

    end = datetime.now(UTC) + timedelta(seconds=1)
    records = local_platform.scoring_records(ScoringQuery(ENDPOINT, "blue", start, end)).records
    by_id = {r.request_id: r for r in records}
    assert list(by_id) == ["order-1", "order-2", generated, "big", "bad-1"]
    first = by_id["order-1"]
    assert (first.deployment, first.status, first.mirrored, first.rows) == ("blue", 200, False, 2)
    assert first.predictions == ("1", "0")
    assert first.probabilities == (0.9, 0.1)
    assert first.inputs == ({"amount": 0.7, "merchant": "m1"}, {"amount": 0.1})
    assert first.latency_ms is not None
    assert first.latency_ms > 0
    assert (by_id["big"].rows, len(by_id["big"].predictions), len(by_id["big"].inputs)) == (150, 150, MAX_INPUT_ROWS)
    assert (by_id["bad-1"].status, by_id["bad-1"].predictions, by_id["bad-1"].inputs) == (
        400,
        (),
        ({"amount": "lots"},),
    )

    lean_query = ScoringQuery(ENDPOINT, "blue", start, end, include_inputs=False, limit=2)
    lean = local_platform.scoring_records(lean_query)
    lean_ids = [r.request_id for r in lean.records]
    assert len(lean_ids) == 2
    assert lean_ids == [i for i in by_id if i in lean_ids], "a sample keeps the records' order"
    assert lean.truncated
    assert local_platform.scoring_records(lean_query).records == lean.records, "the same sample on every read"
    assert all(r.inputs == () for r in lean.records)

    # Mirrored copies keep the request id; they count only when asked for.
    def mirrored() -> list[str]:
        window = ScoringQuery(ENDPOINT, "green", start, end, include_mirrored=True)
        return [r.request_id for r in local_platform.scoring_records(window).records if r.mirrored]

    for _ in range(20):
        _post(port, key, {"data": [{"amount": 0.7}]}, {"x-request-id": "mirror-me"})
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while "mirror-me" not in mirrored() and datetime.now(UTC) < deadline:
        time.sleep(0.05)
    assert "mirror-me" in mirrored()
    assert local_platform.scoring_records(ScoringQuery(ENDPOINT, "green", start, end)).records == ()


def test_old_router_lines_without_ids_are_skipped(local_platform: LocalPlatform) -> None:
    path = local_platform.layout.metrics_file(ENDPOINT, "blue")
    path.parent.mkdir(parents=True)
    now = datetime.now(UTC).timestamp()
    path.write_text(
        json.dumps({"t": now, "ms": 3.0, "status": 200, "classes": ["1"], "mirror": False})
        + "\n"
        + json.dumps({"t": now, "ms": 3.0, "status": 200, "classes": ["0"], "mirror": False, "id": "r1"})
        + "\n"
        + '{"t": 1'  # a line being written
    )
    window = ScoringQuery(ENDPOINT, "blue", datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC) + timedelta(1))
    records = local_platform.scoring_records(window).records
    assert [(r.request_id, r.predictions, r.rows) for r in records] == [("r1", ("0",), 1)]
    assert local_platform.scoring_records(ScoringQuery(ENDPOINT, "never", window.start, window.end)).records == ()


# ------------------------------------------------------------------------- Azure ML's data collector


def test_deployments_enable_the_data_collector(azure_platform: MLPlatform, fake_arm: FakeAzureML) -> None:
    from tests.platform.test_azureml import _only

    azure_platform.ensure_endpoint(EndpointSpec(ENDPOINT))
    azure_platform.create_or_update_deployment(DeploymentSpec(ENDPOINT, "blue", "fraud", "3", code=SCORING_CODE_ASSET))
    body = _only(fake_arm, "PUT", f"/onlineEndpoints/{ENDPOINT}/deployments/blue").body["properties"]
    collector = body["dataCollector"]
    assert collector["rollingRate"] == "Hour"
    # The SDK spells the REST enum in lower case; the service reads it case-insensitively.
    assert {name: c["dataCollectionMode"].lower() for name, c in collector["collections"].items()} == {
        "model_inputs": "enabled",
        "model_outputs": "enabled",
    }
    assert {c["samplingRate"] for c in collector["collections"].values()} == {1.0}


def _event(kind: str, at: datetime, rows: list[dict[str, object]], correlation: str = "c-1") -> str:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w/onlineEndpoints/{ENDPOINT}/deployments/blue",
            "type": f"azureml.inference.{kind}",
            "datacontenttype": "application/json",
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": rows,
            "correlationid": correlation,
            "xrequestid": correlation,
            "modelversion": "default",
            "collectdatatype": "pandas.core.frame.DataFrame",
            "agent": "azureml-ai-monitoring/1.0.0",
        }
    )


def test_collector_lines_parse_objects_arrays_and_skip_garbage() -> None:
    at = datetime(2024, 3, 5, 18, 16, 25, tzinfo=UTC)
    line = _event("model_inputs", at, [{"amount": 1.0}])
    assert parse_collector_line(line)[0].rows == ({"amount": 1.0},)
    assert len(parse_collector_line(f"[{line},{line}]")) == 2
    assert parse_collector_line("{not json") == []
    assert parse_collector_line(json.dumps({"data": []})) == []  # no time
    columnar = json.dumps({"time": "2024-03-05T18:16:25Z", "data": {"amount": [1.0, 2.0]}, "correlationid": "x"})
    assert parse_collector_line(columnar)[0].rows == ({"amount": 1.0}, {"amount": 2.0})
    prefixes = collector_prefixes(ENDPOINT, "blue", "model_inputs", at, at + timedelta(days=1))
    assert prefixes == [
        f"modelDataCollector/{ENDPOINT}/blue/model_inputs/2024/03/05/",
        f"modelDataCollector/{ENDPOINT}/blue/model_inputs/2024/03/06/",
    ]
    limited = CollectedRequests(at, at + timedelta(hours=1), limit=1)
    limited.add_outputs(
        parse_collector_line(
            _event("model_outputs", at, [{"request_id": "a", "class": 1}, {"request_id": "b", "class": 0}])
        )
    )
    assert limited.truncated
    assert [r.request_id for r in limited.records("blue", True)] in (["a"], ["b"])


def _request_events(at: datetime, count: int, collection: str) -> list[str]:
    """One collector line per request, ``count`` requests spread evenly over ten hours from ``at``."""

    def rows(i: int) -> list[dict[str, object]]:
        if collection == "model_inputs":
            return [{"request_id": f"req-{i}", "amount": float(i)}]
        return [{"request_id": f"req-{i}", "class": i % 2}]

    return [_event(collection, at + timedelta(hours=10) * i / count, rows(i)) for i in range(count)]


def test_a_window_with_more_requests_than_the_limit_is_sampled_over_all_of_it() -> None:
    at = datetime(2024, 3, 5, 8, 0, tzinfo=UTC)
    outputs = _request_events(at, 2000, "model_outputs")
    inputs = _request_events(at, 2000, "model_inputs")

    def collect(order: int) -> list[ScoringRecord]:
        collected = CollectedRequests(at, at + timedelta(hours=10), limit=200)
        for line in outputs[::order]:
            collected.add_outputs(parse_collector_line(line))
        for line in inputs[::order]:  # the inputs pass comes second, as the adapter reads them
            collected.add_inputs(parse_collector_line(line))
        assert collected.truncated
        return list(collected.records("blue", include_inputs=True))

    records = collect(1)
    assert len(records) == 200
    assert [r.time for r in records] == sorted(r.time for r in records), "oldest first"
    # Every kept request has both halves: the passes keep and drop the same requests.
    assert all(r.status == 200 and r.predictions and r.inputs for r in records)
    per_hour = [sum(1 for r in records if r.time.hour == 8 + h) for h in range(10)]
    assert min(per_hour) >= 8, f"the sample should cover the whole window (about 20 per hour): {per_hour}"
    assert collect(-1) == records, "the same sample whatever order the blobs are read in"


def test_a_request_sample_never_takes_back_a_request_it_dropped() -> None:
    sample: RequestSample[int] = RequestSample(limit=10)
    for round_ in range(3):  # a second and third pass over the same ids (inputs after outputs) change nothing
        for i in range(1000):
            sample.get_or_add(f"id-{i}", round_)
    assert len(sample.kept) == 10
    assert set(sample.kept.values()) == {0}
    expected = sorted(range(1000), key=lambda i: (sample_priority(f"id-{i}"), f"id-{i}"))[:10]
    assert set(sample.kept) == {f"id-{i}" for i in expected}
    assert RequestSample[int](limit=0).get_or_add("x", 1) is None


@pytest.mark.azurite
def test_scoring_records_come_from_the_data_collector_on_the_workspace_datastore(
    fake_arm: FakeAzureML, azurite_connection_string: str
) -> None:
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(azurite_connection_string)
    container = blobs.get_container_client(OUTPUTS_CONTAINER)
    if not container.exists():
        container.create_container()
    now = datetime.now(UTC).replace(microsecond=0)
    hour = f"{now:%Y/%m/%d/%H}"
    base = f"modelDataCollector/{ENDPOINT}/blue"
    inputs = "\n".join(
        [
            # score.py's request_id column: two requests the collector batched into one event
            _event(
                "model_inputs",
                now,
                [
                    {"request_id": "r1", "amount": 0.7},
                    {"request_id": "r1", "amount": 0.2},
                    {"request_id": "r2", "amount": 0.9},
                ],
                correlation="batch-1",
            ),
            # no request_id column: the event's correlation id names the request
            _event("model_inputs", now, [{"amount": 0.4}], correlation="r3"),
            _event("model_inputs", now - timedelta(hours=3), [{"request_id": "old", "amount": 1.0}]),
            "{truncated",
        ]
    )
    outputs = "\n".join(
        [
            _event(
                "model_outputs",
                now,
                [
                    {"request_id": "r1", "class": 1, "probability": 0.8},
                    {"request_id": "r1", "class": 0, "probability": 0.3},
                    {"request_id": "r2", "class": 1, "probability": 0.95},
                ],
                correlation="batch-1",
            ),
            _event("model_outputs", now, [{"class": 0, "probability": 0.4}], correlation="r3"),
        ]
    )
    container.upload_blob(f"{base}/model_inputs/{hour}/instance-a.jsonl", inputs.encode(), overwrite=True)
    container.upload_blob(f"{base}/model_outputs/{hour}/instance-a.jsonl", outputs.encode(), overwrite=True)
    container.upload_blob(f"{base}/model_outputs/{hour}/instance-b.jsonl", b"", overwrite=True)
    container.upload_blob(
        f"modelDataCollector/{ENDPOINT}/green/model_outputs/{hour}/x.jsonl", outputs.encode(), overwrite=True
    )
    asked: list[str] = []
    platform = azure_platform_on_blobs(fake_arm, blobs, asked)
    window = ScoringQuery(ENDPOINT, "blue", now - timedelta(hours=1), now + timedelta(minutes=1))
    result = platform.scoring_records(window)
    assert asked
    assert asked[0] == "https://devstoreaccount1.blob.core.windows.net"
    by_id = {r.request_id: r for r in result.records}
    assert sorted(by_id) == ["r1", "r2", "r3"]
    r1 = by_id["r1"]
    assert (r1.deployment, r1.status, r1.rows, r1.predictions, r1.probabilities) == (
        "blue",
        200,
        2,
        ("1", "0"),
        (0.8, 0.3),
    )
    assert r1.inputs == ({"amount": 0.7}, {"amount": 0.2})
    assert by_id["r3"].inputs == ({"amount": 0.4},)
    assert by_id["r3"].predictions == ("0",)
    assert not result.truncated

    lean = platform.scoring_records(ScoringQuery(ENDPOINT, "blue", window.start, window.end, include_inputs=False))
    assert {r.request_id: r.inputs for r in lean.records} == {"r1": (), "r2": (), "r3": ()}
    later = ScoringQuery(ENDPOINT, "blue", now + timedelta(minutes=1), now + timedelta(hours=1))
    assert platform.scoring_records(later).records == ()
    assert platform.scoring_records(ScoringQuery(ENDPOINT, "purple", window.start, window.end)).records == ()
