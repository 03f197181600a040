"""score.py hands each request's rows and predictions to Azure ML's data collector, tagged with its request id.

azureml-ai-monitoring and the inference server's ``rawhttp`` are not installed here (they are on the
compute), so stand-in modules play them: a Collector that writes the collector's JSON-lines event
format, which the Azure adapter's reader (shared.platform.scoring) must then fold back into one
scoring record per request.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pandas as pd
import pytest

from shared.platform.scoring import CollectedRequests, parse_collector_line
from tests.training.test_score import load_score_module


class _Context:
    def __init__(self, id: str) -> None:  # the real class's keyword is id
        self.id = id


class _Collector:
    """Writes what it collects as the data collector does: one JSON event per call, rows as records."""

    lines: ClassVar[dict[str, list[str]]] = {}
    fail: ClassVar[bool] = False

    def __init__(self, name: str, on_error: Any = None) -> None:
        self.name = name
        self.on_error = on_error
        _Collector.lines.setdefault(name, [])

    def collect(self, frame: pd.DataFrame, context: _Context | None = None) -> _Context:
        if _Collector.fail:
            raise RuntimeError("collector is down")
        correlation = context.id if context is not None else "generated"
        event = {
            "specversion": "1.0",
            "id": f"evt-{len(_Collector.lines[self.name])}",
            "source": "/subscriptions/x/onlineEndpoints/fraud-ep/deployments/fraud-v2",
            "type": f"azureml.inference.{self.name}",
            "datacontenttype": "application/json",
            "time": datetime.now(UTC).isoformat(),
            "data": json.loads(frame.to_json(orient="records")),
            "correlationid": correlation,
        }
        _Collector.lines[self.name].append(json.dumps(event))
        return context or _Context(correlation)


class _Request:
    """The inference server's request object under @rawhttp: headers and a body."""

    def __init__(self, body: str, headers: dict[str, str]) -> None:
        self.headers = headers
        self._body = body

    def get_data(self) -> bytes:
        return self._body.encode()


class _AMLResponse:
    """The inference server's response class (a flask Response there): what run() answered."""

    def __init__(self, message: Any, status_code: int, response_headers: Any = None, json_str: bool = False) -> None:
        self.message, self.status_code, self.json_str = message, status_code, json_str


def _module(name: str, **attributes: Any) -> ModuleType:
    module = ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


@pytest.fixture
def collecting_score(trained: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    _Collector.lines, _Collector.fail = {}, False
    wrapped: list[str] = []

    def rawhttp(function: Any) -> Any:
        wrapped.append(function.__name__)
        return function

    for name, module in {
        "azureml": _module("azureml"),
        "azureml.ai": _module("azureml.ai"),
        "azureml.ai.monitoring": _module("azureml.ai.monitoring", Collector=_Collector),
        "azureml.ai.monitoring.context": _module("azureml.ai.monitoring.context", BasicCorrelationContext=_Context),
        "azureml.contrib": _module("azureml.contrib"),
        "azureml.contrib.services": _module("azureml.contrib.services"),
        "azureml.contrib.services.aml_request": _module("azureml.contrib.services.aml_request", rawhttp=rawhttp),
        "azureml.contrib.services.aml_response": _module(
            "azureml.contrib.services.aml_response", AMLResponse=_AMLResponse
        ),
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(trained))
    module = load_score_module()
    module.init()
    assert wrapped == ["run"], "run() must be registered with @rawhttp so it sees the request headers"
    return module


def test_each_request_is_collected_with_its_request_id_and_read_back_per_request(
    collecting_score: ModuleType, trained: Path
) -> None:
    raw = (trained / "sample_input.json").read_text()
    rows = json.loads(raw)["data"]
    first = collecting_score.run(_Request(raw, {"x-ms-client-request-id": "req-0001"}))
    collecting_score.run(_Request(raw, {"x-request-id": "req-0002"}))

    start = datetime.now(UTC) - timedelta(minutes=1)
    folded = CollectedRequests(start, start + timedelta(minutes=2), limit=100)
    folded.add_inputs(e for line in _Collector.lines["model_inputs"] for e in parse_collector_line(line))
    folded.add_outputs(e for line in _Collector.lines["model_outputs"] for e in parse_collector_line(line))
    records = {r.request_id: r for r in folded.records("fraud-v2", include_inputs=True)}
    assert sorted(records) == ["req-0001", "req-0002"]
    one = records["req-0001"]
    assert one.rows == len(rows)
    assert list(one.predictions) == [str(p["class"]) for p in first["predictions"]]
    assert [round(p, 6) for p in one.probabilities if p is not None] == [p["probability"] for p in first["predictions"]]
    assert set(one.inputs[0]) == set(rows[0])  # the request_id tag is not an input column


def test_a_request_without_an_id_gets_one_and_a_failing_collector_never_fails_scoring(
    collecting_score: ModuleType, trained: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = (trained / "sample_input.json").read_text()
    collecting_score.run(_Request(raw, {}))
    event = json.loads(_Collector.lines["model_outputs"][0])
    assert len(event["data"][0]["request_id"]) == 36  # a uuid4
    _Collector.fail = True
    answer = collecting_score.run(_Request(raw, {"x-request-id": "req-0003"}))
    assert len(answer["predictions"]) == len(json.loads(raw)["data"])
    assert "data collection failed" in caplog.text


def test_a_bad_payload_under_the_inference_server_is_a_400_that_names_the_row_and_column(
    collecting_score: ModuleType, trained: Path
) -> None:
    """The inference server answers any exception from run() with a bare 500; run() must answer itself."""
    rows = json.loads((trained / "sample_input.json").read_text())["data"]
    bad = [rows[0], {**rows[1], "x0": "twelve"}]
    answer = collecting_score.run(_Request(json.dumps({"data": bad}), {}))
    assert isinstance(answer, _AMLResponse)
    assert answer.status_code == 400
    assert answer.json_str
    assert "row 1, column 'x0'" in answer.message["error"]
    assert collecting_score.run(_Request("{not json", {})).status_code == 400
    assert "predictions" in collecting_score.run(_Request(json.dumps({"data": rows}), {}))
