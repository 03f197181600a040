"""The Azurite fixture every storage test relies on really serves blobs and tables."""

from __future__ import annotations

import uuid

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient


@pytest.mark.azurite
def test_azurite_serves_blob_and_table(azurite_connection_string: str) -> None:
    blobs = BlobServiceClient.from_connection_string(azurite_connection_string)
    container = blobs.create_container(f"c{uuid.uuid4().hex[:10]}")
    container.upload_blob("hello.txt", b"hi")
    assert container.download_blob("hello.txt").readall() == b"hi"
    tables = TableServiceClient.from_connection_string(azurite_connection_string)
    table = tables.create_table(f"t{uuid.uuid4().hex[:10]}")
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
    assert table.get_entity("p", "r")["v"] == 1
