"""Fixtures for live signals: a model spec of its own per test, Azurite storage and registry, a local platform."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from shared.platform.local import LocalPlatform
from shared.platform.scoring import router_line
from shared.registry import Registry
from shared.settings import StorageSettings
from shared.spec import ModelSpec, load_spec
from shared.storage import BlobStore, blob_service_client

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "fraud-ep"


@pytest.fixture(scope="session")
def fraud_spec() -> ModelSpec:
    return load_spec(ROOT / "models" / "fraud.yaml")


@pytest.fixture
def model() -> str:
    """A model name no other test uses (tests share Azurite's containers and tables)."""
    return f"m{uuid.uuid4().hex[:12]}"


@pytest.fixture
def spec(fraud_spec: ModelSpec, model: str) -> ModelSpec:
    return fraud_spec.model_copy(update={"name": model})


@pytest.fixture
def store(azurite_connection_string: str, model: str) -> BlobStore:
    settings = StorageSettings(azurite_connection_string, None, None, None, None)
    blob_store = BlobStore(blob_service_client(settings), known_models={model})
    blob_store.ensure_containers()
    return blob_store


@pytest.fixture
def registry(azurite_connection_string: str, store: BlobStore) -> Registry:
    reg = Registry.from_settings(StorageSettings(azurite_connection_string, None, None, None, None), payloads=store)
    reg.ensure_tables()
    return reg


@pytest.fixture
def platform(tmp_path: Path) -> LocalPlatform:
    """A local platform whose scoring logs the tests write themselves (no server runs)."""
    return LocalPlatform(tmp_path / "state")


@dataclass(frozen=True)
class Scored:
    """One request as the router would log it."""

    request_id: str
    at: datetime
    rows: list[dict[str, Any]]
    classes: list[Any]
    probabilities: list[float | None] | None = None
    status: int = 200
    mirrored: bool = False


def write_scored(platform: LocalPlatform, deployment: str, requests: Iterable[Scored]) -> None:
    """Append router log lines (the exact shape the scoring server writes) for ``deployment``."""
    path = platform.layout.metrics_file(ENDPOINT, deployment)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for r in requests:
            probabilities = r.probabilities or [None] * len(r.classes)
            answer: Mapping[str, Any] = {
                "predictions": [{"class": c, "probability": p} for c, p in zip(r.classes, probabilities, strict=True)]
            }
            line = router_line(
                request_id=r.request_id,
                deployment=deployment,
                at=r.at.timestamp(),
                latency_ms=12.5,
                status=r.status,
                mirrored=r.mirrored,
                request=json.dumps({"data": r.rows}).encode(),
                response=json.dumps(answer).encode(),
            )
            handle.write(json.dumps(line) + "\n")


def settle() -> None:
    """Blob last-modified times have one-second resolution: step past the second of the last upload."""
    time.sleep(1.05)
