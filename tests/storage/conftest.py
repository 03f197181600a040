"""Fixtures: a BlobStore and a Registry on the session's Azurite, each test with its own model names."""

from __future__ import annotations

import uuid

import pytest

from shared.registry import Registry
from shared.settings import StorageSettings
from shared.storage import BlobStore, blob_service_client


def storage_settings(connection_string: str) -> StorageSettings:
    return StorageSettings(connection_string, None, None, None, None)


@pytest.fixture
def model() -> str:
    """A model name no other test uses, so tests can share Azurite's containers and tables."""
    return f"m{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(azurite_connection_string: str, model: str) -> BlobStore:
    # Small chunks so that streaming is observable on small test blobs.
    service = blob_service_client(
        storage_settings(azurite_connection_string), max_chunk_get_size=64 * 1024, max_single_get_size=64 * 1024
    )
    blob_store = BlobStore(service, known_models={model, "fraud"})
    blob_store.ensure_containers()
    return blob_store


@pytest.fixture
def registry(azurite_connection_string: str, store: BlobStore) -> Registry:
    reg = Registry.from_settings(storage_settings(azurite_connection_string), payloads=store)
    reg.ensure_tables()
    return reg
