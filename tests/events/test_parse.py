"""Inbound events → Trigger: documented samples parse right; malformed ones give our typed error only."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import (
    EventError,
    KnownModels,
    Trigger,
    UnknownEventTypeError,
    UnknownModelError,
    parse_event,
    parse_http,
)
from shared.spec import load_specs
from tests.events import samples

KNOWN = KnownModels(frozenset({"fraud", "churn"}), {"fraud-ep": "fraud"})


def test_blob_created_event_grid_schema() -> None:
    t = parse_event(samples.BLOB_CREATED, KNOWN)
    assert (t.kind, t.model, t.actionable) == ("blob_created", "fraud", True)
    assert t.blob is not None
    assert t.blob.url == samples.BLOB_CREATED["data"]["url"]
    assert (t.blob.etag, t.blob.size, t.blob.container, t.blob.name) == (
        '"0x8D4BCC2E4835CD0"',
        524288,
        "landing",
        "fraud/2026/11/batch-001.csv",
    )
    assert t.blob.sequencer == "00000000000004420000000000028963"
    assert t.event_id == samples.BLOB_CREATED["id"]
    assert t.occurred_at == datetime(2017, 6, 26, 18, 41, 0, 958410, tzinfo=UTC)
    assert t.dedupe_key == f"blob|{t.blob.url}|{t.blob.etag}"


def test_blob_created_cloudevents_schema() -> None:
    t = parse_event(samples.BLOB_CREATED_CLOUDEVENT, KNOWN)
    assert (t.kind, t.model, t.blob and t.blob.name, t.source) == (
        "blob_created",
        "fraud",
        "fraud/batch-002.csv",
        samples.ACCOUNT,
    )


def test_func_event_grid_event_object_as_the_worker_builds_it() -> None:
    raw = samples.BLOB_CREATED
    event = func.EventGridEvent(
        id=raw["id"],
        data=raw["data"],
        topic=raw["topic"],
        subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=datetime(2017, 6, 26, tzinfo=UTC),
        data_version=raw["dataVersion"],
    )
    assert parse_event(event, KNOWN) == parse_event(raw, KNOWN).__class__(
        **{**parse_event(raw, KNOWN).__dict__, "occurred_at": datetime(2017, 6, 26, tzinfo=UTC)}
    )


def test_func_cloud_event_object() -> None:
    raw = samples.BLOB_CREATED_CLOUDEVENT
    event = func.CloudEvent(
        id=raw["id"],
        source=raw["source"],
        type=raw["type"],
        specversion="1.0",
        data=raw["data"],
        subject=raw["subject"],
    )
    t = parse_event(event, KNOWN)
    assert (t.model, t.blob and t.blob.etag) == ("fraud", '"0x8D4BCC2E4835CD1"')


def test_json_text_and_bytes_parse_like_dicts() -> None:
    assert parse_event(json.dumps(samples.BLOB_CREATED), KNOWN) == parse_event(samples.BLOB_CREATED, KNOWN)
    assert parse_event(json.dumps(samples.BLOB_CREATED).encode(), KNOWN) == parse_event(samples.BLOB_CREATED, KNOWN)


def test_data_lake_gen2_only_flush_with_close_is_actionable() -> None:
    flushed = parse_event(samples.gen2("FlushWithClose"), KNOWN)
    created = parse_event(samples.gen2("CreateFile"), KNOWN)
    assert flushed.actionable
    assert flushed.blob is not None
    assert flushed.blob.name == "fraud/lake/part-0.csv"
    assert not created.actionable
    assert "FlushWithClose" in created.reason


def test_a_blob_is_known_by_one_url_however_its_event_spells_it() -> None:
    """The listing's url (the SDK's spelling) and the event's must agree: claims and dedupe keys use it."""
    listed = "https://stperennial.blob.core.windows.net/landing/fraud/lake/part%20~0.csv"
    for spelled in (
        "https://stperennial.dfs.core.windows.net/landing/fraud/lake/part%20~0.csv",  # a Data Lake event
        "https://STPERENNIAL.blob.core.windows.net/landing/fraud/lake/part%20%7E0.csv",  # host case, over-encoded
        "https://stperennial.blob.core.windows.net/landing/fraud/lake/part%20~0.csv?sv=2024",  # a query
    ):
        event = samples.gen2("FlushWithClose")
        event["subject"] = "/blobServices/default/containers/landing/blobs/fraud/lake/part ~0.csv"
        event["data"]["url"] = spelled
        blob = parse_event(event, KNOWN).blob
        assert blob is not None
        assert blob.url == listed, spelled


def test_envelope_fields_of_the_workers_event_objects_are_checked() -> None:
    raw = samples.BLOB_CREATED
    fields = {"data": raw["data"], "topic": raw["topic"], "subject": raw["subject"], "event_type": raw["eventType"]}
    for bad_id in (42, "", ["a"]):
        event = func.EventGridEvent(id=bad_id, event_time=None, data_version="1", **fields)  # type: ignore[arg-type]
        with pytest.raises(EventError) as raised:
            parse_event(event, KNOWN)
        assert raised.value.field == "id"


def test_a_blank_etag_is_refused() -> None:
    event = {**samples.BLOB_CREATED, "data": {**samples.BLOB_CREATED["data"], "eTag": "  "}}
    with pytest.raises(EventError) as raised:
        parse_event(event, KNOWN)
    assert raised.value.field == "data.eTag"


def test_azure_ml_drift() -> None:
    t = parse_event(samples.DRIFT, KNOWN)
    assert (t.kind, t.model, t.actionable) == ("drift_alert", "fraud", True)
    assert t.details["drift_coefficient"] == pytest.approx(0.835, abs=1e-3)
    assert t.details["run_id"] == samples.DRIFT["data"]["RunId"]


def test_azure_ml_run_status() -> None:
    t = parse_event(samples.RUN_STATUS, KNOWN)
    assert (t.kind, t.model, t.actionable) == ("run_status", "fraud", True)
    assert t.details["status"] == "failed"
    running = copy.deepcopy(samples.RUN_STATUS)
    running["data"]["runStatus"] = "Running"
    assert not parse_event(running, KNOWN).actionable
    completed = copy.deepcopy(samples.RUN_STATUS)
    completed["eventType"] = "Microsoft.MachineLearningServices.RunCompleted"
    del completed["data"]["runStatus"]
    assert parse_event(completed, KNOWN).details["status"] == "Completed"


def test_azure_ml_model_registered_is_record_only() -> None:
    t = parse_event(samples.ML_MODEL_REGISTERED, KNOWN)
    assert (t.kind, t.model, t.actionable, t.details["version"]) == ("model_event", "fraud", False, "3")


def test_monitor_common_alert_schema() -> None:
    t = parse_http(json.dumps(samples.MONITOR_ALERT), KNOWN)
    assert (t.kind, t.model, t.actionable) == ("monitor_alert", "fraud", True)
    assert t.alert is not None
    assert (t.alert.metric_name, t.alert.metric_value, t.alert.threshold, t.alert.severity) == (
        "RequestLatency_P95",
        731.5,
        500.0,
        "Sev3",
    )
    resolved = copy.deepcopy(samples.MONITOR_ALERT)
    resolved["data"]["essentials"]["monitorCondition"] = "Resolved"
    r = parse_http(resolved, KNOWN)
    assert not r.actionable, "a Resolved alert is record-only"
    assert r.dedupe_key != t.dedupe_key


def test_monitor_alert_model_from_custom_property_or_rule_name() -> None:
    alert = copy.deepcopy(samples.MONITOR_ALERT)
    alert["data"]["essentials"]["alertTargetIDs"] = []
    alert["data"]["customProperties"] = {"perennial_model": "churn"}
    assert parse_http(alert, KNOWN).model == "churn"
    alert["data"]["customProperties"] = None
    alert["data"]["essentials"]["alertRule"] = "churn-error-rate"
    assert parse_http(alert, KNOWN).model == "churn"


def test_perennial_retrain_requested() -> None:
    t = parse_event(samples.RETRAIN_REQUESTED, KNOWN)
    assert (t.kind, t.model, t.actionable, t.reason) == ("retrain_requested", "fraud", True, "model older than 30 days")
    promoted = {
        **samples.RETRAIN_REQUESTED,
        "eventType": "Perennial.ModelPromoted",
        "data": {"model": "fraud", "version": "4", "run_id": "fraud-abc"},
    }
    p = parse_event(promoted, KNOWN)
    assert (p.kind, p.actionable, p.details["version"]) == ("perennial_event", False, "4")
    newer_minor = {**samples.RETRAIN_REQUESTED, "dataVersion": "1.3"}
    newer_minor["data"] = {**samples.RETRAIN_REQUESTED["data"], "added_in_1_3": True}
    assert parse_event(newer_minor, KNOWN).actionable


def test_a_malformed_field_is_named_in_the_refusal() -> None:
    """A refused event is only logged (Event Grid gets a 200 or a 400 listing it): the message is the only clue."""
    raw = samples.RETRAIN_REQUESTED
    numbered = func.EventGridEvent(  # as the worker builds it from a body whose dataVersion is a number
        id=raw["id"],
        data=raw["data"],
        topic=raw.get("topic", ""),
        subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=datetime(2026, 12, 1, tzinfo=UTC),
        data_version=1,
    )
    with pytest.raises(EventError, match="dataVersion 1 is not a string") as refused:
        parse_event(numbered, KNOWN)
    assert refused.value.field == "dataVersion"
    broken = copy.deepcopy(samples.BLOB_CREATED)
    broken["data"]["url"] = "http://[::1/landing/fraud/b1.csv"
    with pytest.raises(EventError, match=r"malformed \(ValueError: Invalid IPv6 URL\)"):
        parse_event(broken, KNOWN)


def test_manual_request() -> None:
    t = parse_http(json.dumps(samples.MANUAL).encode(), KNOWN, request_id="req-1")
    assert (t.kind, t.model, t.reason, t.event_id) == ("manual", "fraud", "new labels from the fraud team", "req-1")
    assert parse_http({"model": "fraud"}, KNOWN, request_id="r").reason == "manual request"


def test_trigger_round_trips_through_json() -> None:
    for t in (
        parse_event(samples.BLOB_CREATED, KNOWN),
        parse_http(samples.MONITOR_ALERT, KNOWN),
        parse_event(samples.DRIFT, KNOWN),
    ):
        assert Trigger.from_json(json.loads(json.dumps(t.to_json()))) == t


def test_known_models_from_the_real_specs() -> None:
    known = KnownModels.from_specs(load_specs("models"))
    assert parse_event(samples.BLOB_CREATED, known).model == "fraud"
    assert parse_http(samples.MONITOR_ALERT, known).model == "fraud"


# --------------------------------------------------------------------------- malformed


def _blob(**changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(samples.BLOB_CREATED)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = event
        for p in parents:
            target = target[p]
        if value is _DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return event


_DELETE = object()
_SUBJ = "/blobServices/default/containers/"

MALFORMED_EVENTS: list[tuple[str, Any, type[EventError], str]] = [
    ("missing id", _blob(id=_DELETE), EventError, "id"),
    ("missing data", _blob(data=_DELETE), EventError, "data"),
    ("data is a list", _blob(data=[1, 2]), EventError, "data"),
    ("missing url", _blob(data__url=_DELETE), EventError, "data.url"),
    ("missing eTag", _blob(data__eTag=_DELETE), EventError, "data.eTag"),
    ("missing api", _blob(data__api=_DELETE), EventError, "data.api"),
    ("size is text", _blob(data__contentLength="12"), EventError, "data.contentLength"),
    ("size negative", _blob(data__contentLength=-1), EventError, "data.contentLength"),
    # Past int64 the claim could not be stored, and the model's coordinator failed on it.
    ("size past 2**53", _blob(data__contentLength=2**64), EventError, "data.contentLength"),
    ("size is bool", _blob(data__contentLength=True), EventError, "data.contentLength"),
    # Text that is not Unicode would reach a run's reason and fail every write of it.
    ("lone surrogate in data", _blob(data__contentType="text/\ud800"), EventError, "data.contentType"),
    ("eTag is a number", _blob(data__eTag=7), EventError, "data.eTag"),
    (
        "wrong container",
        _blob(
            subject=_SUBJ + "quarantine/blobs/fraud/a.csv",
            data__url="https://stperennial.blob.core.windows.net/quarantine/fraud/a.csv",
        ),
        EventError,
        "subject",
    ),
    (
        "dot-dot in the path",
        _blob(
            subject=_SUBJ + "landing/blobs/fraud/../churn/a.csv",
            data__url="https://stperennial.blob.core.windows.net/landing/fraud/../churn/a.csv",
        ),
        EventError,
        "subject",
    ),
    (
        "absolute path",
        _blob(
            subject=_SUBJ + "landing/blobs//etc/passwd",
            data__url="https://stperennial.blob.core.windows.net/landing//etc/passwd",
        ),
        EventError,
        "subject",
    ),
    (
        "unknown model",
        _blob(
            subject=_SUBJ + "landing/blobs/spam/a.csv",
            data__url="https://stperennial.blob.core.windows.net/landing/spam/a.csv",
        ),
        UnknownModelError,
        "subject",
    ),
    (
        "no model folder",
        _blob(subject=_SUBJ + "landing/blobs/a.csv", data__url="https://s.blob.core.windows.net/landing/a.csv"),
        EventError,
        "subject",
    ),
    (
        "url names another blob",
        _blob(data__url="https://stperennial.blob.core.windows.net/landing/fraud/other.csv"),
        EventError,
        "data.url",
    ),
    ("url not http", _blob(data__url="file:///etc/passwd"), EventError, "url"),
    ("subject not a blob", _blob(subject="/something/else"), EventError, "subject"),
    ("subject missing", _blob(subject=_DELETE), EventError, "subject"),
    ("eventTime not a time", _blob(eventTime="yesterday"), EventError, "eventTime"),
    ("eventTime a number", _blob(eventTime=1700000000), EventError, "eventTime"),
    ("eventType a number", _blob(eventType=123), EventError, "eventType"),
    ("unknown event type", _blob(eventType="Microsoft.Storage.BlobDeleted"), UnknownEventTypeError, "eventType"),
    ("non-JSON", b"{not json", EventError, "body"),
    ("invalid UTF-8", b"\xff\xfe\xfa", EventError, "body"),
    ("empty body", b"", EventError, "body"),
    ("a JSON list", json.dumps([samples.BLOB_CREATED]), EventError, "body"),
    ("a JSON number", "42", EventError, "event"),
    ("neither schema", {"hello": "world"}, EventError, "eventType"),
    ("cloudevents 0.3", {**samples.BLOB_CREATED_CLOUDEVENT, "specversion": "0.3"}, EventError, "specversion"),
    ("cloudevents binary", {**samples.BLOB_CREATED_CLOUDEVENT, "data_base64": "AAA="}, EventError, "data_base64"),
    (
        "drift coefficient text",
        {**samples.DRIFT, "data": {**samples.DRIFT["data"], "DriftCoefficient": "high"}},
        EventError,
        "data.DriftCoefficient",
    ),
    (
        "drift monitor of no model",
        {**samples.DRIFT, "data": {**samples.DRIFT["data"], "DataDriftName": "x"}},
        UnknownModelError,
        "data.DataDriftName",
    ),
    (
        "foreign run",
        {**samples.RUN_STATUS, "data": {**samples.RUN_STATUS["data"], "runTags": {}}},
        UnknownModelError,
        "data.runTags.perennial_model",
    ),
    (
        "run tags a list",
        {**samples.RUN_STATUS, "data": {**samples.RUN_STATUS["data"], "runTags": []}},
        EventError,
        "data.runTags",
    ),
    ("perennial major version 2", {**samples.RETRAIN_REQUESTED, "dataVersion": "2.0"}, EventError, "dataVersion"),
    (
        "perennial unknown type",
        {**samples.RETRAIN_REQUESTED, "eventType": "Perennial.Nope"},
        UnknownEventTypeError,
        "eventType",
    ),
    ("perennial data without model", {**samples.RETRAIN_REQUESTED, "data": {"reason": "x"}}, EventError, "data.model"),
    (
        "perennial model unknown",
        {**samples.RETRAIN_REQUESTED, "data": {"model": "spam", "reason": "x"}},
        UnknownModelError,
        "data.model",
    ),
    ("oversized body", b"{" + b" " * (1024 * 1024 + 1) + b"}", EventError, "body"),
]


@pytest.mark.parametrize(("case", "event", "error", "field"), MALFORMED_EVENTS, ids=[c[0] for c in MALFORMED_EVENTS])
def test_malformed_event_gives_typed_error(case: str, event: Any, error: type[EventError], field: str) -> None:
    with pytest.raises(error) as info:
        parse_event(event, KNOWN)
    assert info.value.field == field, f"{case}: {info.value}"
    assert info.value.hint
    assert info.value.status == 400


def _alert(**essentials: Any) -> dict[str, Any]:
    alert = copy.deepcopy(samples.MONITOR_ALERT)
    alert["data"]["essentials"].update(essentials)
    return alert


MALFORMED_HTTP: list[tuple[str, Any, str]] = [
    ("severity Sev9", _alert(severity="Sev9"), "data.essentials.severity"),
    ("condition Maybe", _alert(monitorCondition="Maybe"), "data.essentials.monitorCondition"),
    ("alert id missing", _alert(alertId=None), "data.essentials.alertId"),
    ("targets not a list", _alert(alertTargetIDs="x"), "data.essentials.alertTargetIDs"),
    ("no essentials", {"schemaId": "azureMonitorCommonAlertSchema", "data": {}}, "data.essentials"),
    ("old alert schema", {"schemaId": "AzureMonitorMetricAlert", "data": {}}, "schemaId"),
    ("alert of no model", _alert(alertTargetIDs=[], alertRule="cpu-high"), "data.customProperties.perennial_model"),
    ("manual unknown field", {"model": "fraud", "force": True}, "force"),
    ("manual model a number", {"model": 3}, "model"),
    ("manual model unknown", {"model": "spam"}, "model"),
    ("manual reason a list", {"model": "fraud", "reason": ["x"]}, "reason"),
    ("not an object", "[1, 2]", "body"),
    ("alert rule not Unicode", _alert(alertRule="fraud-\ud800"), "data.essentials.alertRule"),
    ("alert target not Unicode", _alert(alertTargetIDs=["/x/\udcff"]), "data.essentials.alertTargetIDs[0]"),
]


@pytest.mark.parametrize(("case", "body", "field"), MALFORMED_HTTP, ids=[c[0] for c in MALFORMED_HTTP])
def test_malformed_http_body_gives_typed_error(case: str, body: Any, field: str) -> None:
    with pytest.raises(EventError) as info:
        parse_http(body, KNOWN)
    assert info.value.field == field, f"{case}: {info.value}"


def test_there_are_more_than_twenty_malformed_variants() -> None:
    assert len(MALFORMED_EVENTS) + len(MALFORMED_HTTP) >= 20


# --------------------------------------------------------------------------- property-based

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
_SAMPLES = [
    samples.BLOB_CREATED,
    samples.BLOB_CREATED_CLOUDEVENT,
    samples.DRIFT,
    samples.RUN_STATUS,
    samples.ML_MODEL_REGISTERED,
    samples.RETRAIN_REQUESTED,
    samples.MONITOR_ALERT,
    samples.MANUAL,
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def _mutated(draw: st.DrawFn) -> Any:
    """A valid sample with one to three fields replaced by arbitrary JSON, or deleted."""
    event = copy.deepcopy(draw(st.sampled_from(_SAMPLES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(event) if p]
        if not paths:
            break
        *parents, leaf = draw(st.sampled_from(paths))
        target = event
        for p in parents:
            target = target[p]
        if draw(st.booleans()):
            target[leaf] = draw(_json)
        elif isinstance(target, dict):
            del target[leaf]
    return event


def _only_typed_errors(value: Any) -> None:
    for parse in (lambda v: parse_event(v, KNOWN), lambda v: parse_http(v, KNOWN)):
        try:
            trigger = parse(value)
        except EventError:
            continue
        assert trigger.model in KNOWN.names
        json.dumps(trigger.to_json())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_samples_raise_nothing_but_event_error(event: Any) -> None:
    _only_typed_errors(event)
    _only_typed_errors(json.dumps(event))


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, st.binary(max_size=200), st.text(max_size=200)))
def test_arbitrary_input_raises_nothing_but_event_error(value: Any) -> None:
    _only_typed_errors(value)
