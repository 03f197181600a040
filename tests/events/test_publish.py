"""Perennial's own events: versioned data, the local adapters, and settings → adapter."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.events import parse_event
from shared.publish import (
    DATA_VERSION,
    EVENT_DATA,
    EventDataError,
    EventGridPublisher,
    MemoryPublisher,
    ModelPromoted,
    OutboundEvent,
    OutboxPublisher,
    PerennialEventType,
    RolloutRolledBack,
    RunCompleted,
    make_event,
    parse_perennial_data,
    publisher_from_settings,
)
from shared.settings import EventGridSettings, StorageSettings, load_settings
from shared.storage import StorageError, blob_service_client
from shared.tables import table_service_client


def test_every_event_type_has_a_data_model_and_the_agreed_names() -> None:
    names = {t.value for t in PerennialEventType}
    assert {
        "Perennial.RetrainRequested",
        "Perennial.ValidationFailed",
        "Perennial.ModelRegistered",
        "Perennial.ModelPromoted",
        "Perennial.RolloutRolledBack",
        "Perennial.RunCompleted",
    } <= names
    assert set(EVENT_DATA) == set(PerennialEventType)


def test_published_events_parse_back_as_triggers(tmp_path: Path) -> None:
    outbox = OutboxPublisher(tmp_path / "events" / "outbox.jsonl")
    event = make_event(
        RolloutRolledBack(model="fraud", version="4", run_id="r1", step="traffic-10", reasons=["p95 720 ms > 500 ms"]),
        event_id="r1:rolled-back",
    )
    outbox.publish([event])
    [line] = (tmp_path / "events" / "outbox.jsonl").read_text().splitlines()
    raw = json.loads(line)
    assert (raw["eventType"], raw["dataVersion"], raw["subject"]) == (
        "Perennial.RolloutRolledBack",
        DATA_VERSION,
        "models/fraud",
    )
    trigger = parse_event(raw, {"fraud"})
    assert (trigger.kind, trigger.actionable, trigger.event_id) == ("perennial_event", False, "r1:rolled-back")
    assert trigger.details["reasons"] == ["p95 720 ms > 500 ms"]


def test_memory_publisher_keeps_events() -> None:
    memory = MemoryPublisher()
    memory.publish([make_event(ModelPromoted(model="fraud", version="2", run_id="r"))])
    assert [e.event_type for e in memory.events] == ["Perennial.ModelPromoted"]


def test_data_is_validated_against_its_type_and_major_version() -> None:
    with pytest.raises(EventDataError) as info:
        parse_perennial_data("Perennial.ModelPromoted", "1.0", {"model": "fraud"})
    assert info.value.field == "data.version"
    with pytest.raises(EventDataError):
        parse_perennial_data("Perennial.ModelPromoted", "2.0", {"model": "fraud", "version": "1", "run_id": "r"})
    with pytest.raises(EventDataError):
        parse_perennial_data(
            "Perennial.DriftDetected", "1.0", {"model": "f", "method": "psi", "score": float("nan"), "threshold": 0.2}
        )


def test_settings_choose_the_adapter(tmp_path: Path) -> None:
    local = load_settings({"PERENNIAL_STATE_DIR": str(tmp_path)})
    assert isinstance(publisher_from_settings(local), OutboxPublisher)
    configured = load_settings(
        {
            "PERENNIAL_EVENTGRID_ENDPOINT": "http://127.0.0.1:7071/eventgrid/topics/perennial/api/events",
            "PERENNIAL_EVENTGRID_KEY": "k",
        }
    )
    publisher = publisher_from_settings(configured)
    assert isinstance(publisher, EventGridPublisher)
    publisher.close()


def test_storage_clients_from_identity_settings() -> None:
    from azure.identity import ManagedIdentityCredential

    identity = StorageSettings(
        None,
        "https://stperennial.blob.core.windows.net",
        "https://stperennial.table.core.windows.net",
        None,
        "00000000-0000-0000-0000-000000000001",
    )
    blobs = blob_service_client(identity)
    tables = table_service_client(identity)
    assert blobs.url.startswith("https://stperennial.blob.core.windows.net")
    assert tables.url.startswith("https://stperennial.table.core.windows.net")
    assert isinstance(blobs.credential, ManagedIdentityCredential)
    with pytest.raises(StorageError):
        blob_service_client(StorageSettings(None, None, None, None, None))


def test_in_azure_the_publisher_uses_the_app_identity_not_a_key() -> None:
    from azure.core.credentials import AzureKeyCredential
    from azure.identity import ManagedIdentityCredential

    client_id = "00000000-0000-0000-0000-000000000002"
    azure = load_settings(
        {
            "PERENNIAL_PLATFORM": "azureml",
            "AzureWebJobsStorage__accountName": "stperennial",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": client_id,
            "AZURE_CLIENT_ID": client_id,
            "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000003",
            "AZURE_RESOURCE_GROUP": "rg",
            "AZUREML_WORKSPACE_NAME": "ws",
            "PERENNIAL_EVENTGRID_ENDPOINT": "https://evgt-x.westeurope-1.eventgrid.azure.net/api/events",
        }
    )
    publisher = publisher_from_settings(azure)
    assert isinstance(publisher, EventGridPublisher)
    credential = publisher._client._credential
    assert isinstance(credential, ManagedIdentityCredential)
    publisher.close()
    # Locally (devhost's topic) the key is used.
    local = EventGridPublisher(EventGridSettings("http://127.0.0.1:7071/eventgrid/topics/perennial/api/events", "k"))
    assert isinstance(local._client._credential, AzureKeyCredential)
    local.close()


def test_rolled_back_evidence_is_strict_json_even_with_infinite_statistics(tmp_path: Path) -> None:
    # A latency ratio against a zero-latency champion is inf: Event Grid refuses the JSON token Infinity.
    evidence = {"verdict": "fail", "metrics": [{"metric": "latency_p95", "ratio": math.inf, "p_value": 0.001}]}
    outbox = OutboxPublisher(tmp_path / "outbox.jsonl")
    outbox.publish(
        [
            make_event(
                RolloutRolledBack(model="fraud", version="4", run_id="r1", step="traffic-10", evidence=evidence),
                event_id="r1:rolled-back",
            )
        ]
    )
    line = (tmp_path / "outbox.jsonl").read_text()
    raw = json.loads(line, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))
    assert raw["data"]["evidence"]["metrics"][0] == {"metric": "latency_p95", "ratio": "inf", "p_value": 0.001}


def test_an_event_read_back_keeps_its_id_and_time_and_a_time_without_zone_is_utc() -> None:
    event = make_event(RunCompleted(model="fraud", run_id="r1", status="promoted"), event_id="r1:completed")
    again = OutboundEvent.from_dict(event.to_dict())
    assert again == event
    naive = {**event.to_dict(), "eventTime": "2026-11-30T06:00:00"}
    assert OutboundEvent.from_dict(naive).event_time == datetime(2026, 11, 30, 6, tzinfo=UTC)
