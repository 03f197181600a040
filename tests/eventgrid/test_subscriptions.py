"""The subscriptions file: Azure's filter semantics, and that it mirrors infra/wiring.bicep."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from devhost.eventgrid.subscriptions import DEFAULT_FILE, SubscriptionsError, load_subscriptions
from devhost.eventgrid.watcher import blob_created_event
from tests.events import samples

ROOT = Path(__file__).resolve().parents[2]


def _blob(api: str = "PutBlob", container: str = "landing") -> dict[str, object]:
    from datetime import UTC, datetime

    return blob_created_event(
        account="devstoreaccount1",
        container=container,
        name="fraud/a.csv",
        url=f"http://127.0.0.1:10000/devstoreaccount1/{container}/fraud/a.csv",
        etag='"0x1"',
        size=3,
        content_type="text/csv",
        sequencer=1,
        now=datetime.now(UTC),
        api=api,
    )


def test_landing_blobs_go_to_on_blob_created_only_when_complete() -> None:
    subs = load_subscriptions()
    assert [s.function for s in subs.matching("storage", _blob())] == ["on_blob_created"]
    assert subs.matching("storage", _blob(api="CreateFile")) == [], "Gen2 CreateFile is filtered like infra does"
    assert subs.matching("storage", _blob(api="FlushWithClose"))
    assert subs.matching("storage", _blob(container="quarantine")) == []
    assert subs.matching("perennial", _blob()) == [], "events only match subscriptions of their own topic"


def test_subject_filter_is_case_insensitive_like_azure() -> None:
    subs = load_subscriptions()
    event = _blob()
    event["subject"] = str(event["subject"]).replace("/containers/landing/", "/containers/LANDING/")
    assert subs.matching("storage", event)


def test_perennial_events_and_azureml_types_route_to_on_alert_event() -> None:
    subs = load_subscriptions()
    assert [s.name for s in subs.matching("perennial", samples.RETRAIN_REQUESTED)] == ["perennial-to-alerts"]
    other = {**samples.RETRAIN_REQUESTED, "eventType": "Contoso.Something"}
    assert subs.matching("perennial", other) == []
    assert [s.function for s in subs.matching("azureml", samples.DRIFT)] == ["on_alert_event"]
    assert subs.matching("azureml", samples.ML_MODEL_REGISTERED) == []
    cloud = {**samples.BLOB_CREATED_CLOUDEVENT, "type": "Perennial.RetrainRequested"}
    assert subs.matching("perennial", cloud), "CloudEvents' type is matched like eventType"


def test_advanced_filter_operators() -> None:
    from devhost.eventgrid.subscriptions import AdvancedFilter

    event = {"eventType": "X", "subject": "s", "data": {"n": 5, "flag": True, "name": "Fraud-EP", "none": None}}

    def f(op: str, key: str, **kw: object) -> bool:
        return AdvancedFilter.model_validate({"operatorType": op, "key": key, **kw}).matches(event)

    assert f("StringIn", "data.name", values=["fraud-ep"])
    assert f("StringNotIn", "data.name", values=["x"])
    assert f("StringContains", "data.name", values=["d-e"])
    assert f("StringEndsWith", "data.name", values=["-EP"])
    assert f("NumberGreaterThan", "data.n", value=4)
    assert not f("NumberLessThan", "data.n", value=5)
    assert f("NumberLessThanOrEquals", "data.n", value=5)
    assert f("NumberIn", "data.n", values=[1, 5])
    assert f("BoolEquals", "data.flag", value=True)
    assert f("IsNullOrUndefined", "data.missing")
    assert f("IsNullOrUndefined", "data.none")
    assert f("IsNotNull", "data.n")
    assert not f("StringIn", "data.missing", values=["x"])
    assert not f("NumberGreaterThan", "data.name", value=1)


def test_bad_subscriptions_file_names_the_field(tmp_path: Path) -> None:
    document = json.loads(DEFAULT_FILE.read_text())
    broken = copy.deepcopy(document)
    broken["subscriptions"][0]["topic"] = "nope"
    path = tmp_path / "subs.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(SubscriptionsError, match="unknown topic 'nope'"):
        load_subscriptions(path)
    broken = copy.deepcopy(document)
    broken["subscriptions"][0]["retryPolicy"]["maxDeliveryAttempts"] = 99
    path.write_text(json.dumps(broken))
    with pytest.raises(SubscriptionsError, match="maxDeliveryAttempts"):
        load_subscriptions(path)
    with pytest.raises(SubscriptionsError, match="no such file"):
        load_subscriptions(tmp_path / "missing.json")


def test_subscriptions_mirror_infra_wiring() -> None:
    bicep = (ROOT / "infra" / "wiring.bicep").read_text()
    subs = load_subscriptions()
    for sub in subs.subscriptions:
        assert f"name: '{sub.name}'" in bicep, f"{sub.name} is not wired in infra/wiring.bicep"
        for event_type in sub.filter.included_event_types or []:
            assert f"'{event_type}'" in bicep
        for flt in sub.filter.advanced_filters:
            assert f"key: '{flt.key}'" in bicep
    assert set(re.findall(r"var \w+FunctionName = '(\w+)'", bicep)) == {s.function for s in subs.subscriptions}
    # The landing filter is the one wiring.bicep builds from landingContainerName (= shared.storage.LANDING).
    from shared.storage import LANDING

    assert "subjectBeginsWith: '/blobServices/default/containers/${landingContainerName}/'" in bicep
    [landing] = [s for s in subs.subscriptions if s.topic == "storage"]
    assert landing.filter.subject_begins_with == f"/blobServices/default/containers/{LANDING}/"
    attempts = re.search(r"param maxDeliveryAttempts int = (\d+)", bicep)
    ttl = re.search(r"param eventTimeToLiveInMinutes int = (\d+)", bicep)
    assert attempts is not None
    assert ttl is not None
    for sub in subs.subscriptions:
        assert sub.retry_policy.max_delivery_attempts == int(attempts.group(1))
        assert sub.retry_policy.event_time_to_live_minutes == int(ttl.group(1))
