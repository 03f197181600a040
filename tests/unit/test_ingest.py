"""on_blob_created as the host calls it (real registry and blobs on Azurite, the Durable client answering as the
host does): a landed blob goes to its model's coordinator; another account's event does not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus as State

from functions import clients
from shared.storage import LANDING
from tests.unit.test_undelivered_requests import Coordinator

pytestmark = pytest.mark.azurite


def _created(url: str, name: str) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=f"ev-{abs(hash(url))}",
        data={"api": "PutBlob", "url": url, "eTag": "0x8DB0000000000A1", "contentLength": 100,
              "contentType": "text/csv", "blobType": "BlockBlob"},
        topic="/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct",
        subject=f"/blobServices/default/containers/landing/blobs/{name}",
        event_type="Microsoft.Storage.BlobCreated",
        event_time=datetime.now(UTC),
        data_version="",
    )  # fmt: skip


def _deliver(app_functions: dict[str, Any], event: func.EventGridEvent, client: Coordinator) -> None:
    asyncio.run(app_functions["on_blob_created"].get_user_function().__wrapped__(event, client=client))


def test_a_landed_blob_goes_to_its_coordinator_and_another_accounts_does_not(
    activity: Any, app_functions: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ours = clients.store().upload_landing("fraud", "ingest-a.csv", b"amount,label\n1,0\n")
    client = Coordinator(State.Running, stage="idle")
    _deliver(app_functions, _created(ours.url, "fraud/ingest-a.csv"), client)
    assert [[b["name"] for b in w["blobs"]] for w in client.raised] == [["fraud/ingest-a.csv"]]

    elsewhere = f"https://otheraccount.blob.core.windows.net/{LANDING}/fraud/ingest-b.csv"
    _deliver(app_functions, _created(elsewhere, "fraud/ingest-b.csv"), client)
    assert len(client.raised) == 1, "another account's blob is not queued"
    assert "is not in this app's storage account" in caplog.text
