"""``training.window_days``: a run trains on the batches that landed inside the window, through the app's activities
as the host runs them (real blobs on this module's own Azurite).

Without a window every run lists, validates and hashes every batch that ever landed, so a run's cost grows with
the landing folder until it no longer fits in an activity's time. Azurite stamps Last-Modified itself, so these
tests use a window of a few seconds and wait it out instead of back-dating a blob.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from functions import clients
from perennial_cli.synthetic import fraud_batch
from shared.live import landing_news
from shared.registry import Run
from shared.storage import LANDING, Manifest, ManifestEntry
from shared.workflow import RunRequest, TriggerInfo, claims_left_out

from .conftest import ROOT, clear_caches

pytestmark = pytest.mark.azurite
WINDOW_SECONDS = 3.0
BATCH = fraud_batch(1200, seed=9).to_csv(index=False).encode()


@pytest.fixture
def windowed(activity: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The activities with fraud's spec trained on the last ``WINDOW_SECONDS`` of landed batches."""
    spec = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    spec["training"]["window_days"] = WINDOW_SECONDS / 86_400
    models = tmp_path / "models"
    models.mkdir()
    (models / "fraud.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    monkeypatch.setenv("PERENNIAL_MODELS_DIR", str(models))
    clear_caches()
    return activity


def _land(name: str) -> str:
    clients.store().container(LANDING).upload_blob(f"fraud/{name}", BATCH, overwrite=True)
    return f"fraud/{name}"


def _old_and_new() -> tuple[str, str]:
    """A batch that landed before the window, then one inside it."""
    old = _land("2026/01/old.csv")
    time.sleep(WINDOW_SECONDS + 1.0)
    return old, _land("2026/03/new.csv")


def _request(run_id: str, blobs: list[str] | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"blobs": blobs} if blobs else {}
    trigger = TriggerInfo(kind="manual", reason="t", source_event_id=run_id, details=details)
    return RunRequest(model="fraud", run_id=run_id, trigger=trigger).dump()


def test_a_run_trains_on_the_batches_inside_the_window_and_leaves_the_rest(windowed: Any) -> None:
    old, new = _old_and_new()
    resolved = windowed("resolve_run_blobs", _request("fraud-window-1"))
    assert [b["name"] for b in resolved["blobs"]] == [new]
    # Left where it is, not quarantined: it is simply older than what this model trains on.
    assert clients.store().container(LANDING).get_blob_client(old).exists()
    # Batches left out do not ask for a run either (the coordinator's look for unclaimed batches).
    work = windowed("pending_work", {"model": "fraud"})
    assert [[b["name"] for b in item["blobs"]] for item in work if item["kind"] == "blobs"] == [[new]]


def test_batches_a_retrain_request_names_are_trained_whatever_their_age(windowed: Any) -> None:
    old, _ = _old_and_new()
    resolved = windowed("resolve_run_blobs", _request("fraud-window-2", blobs=[old]))
    assert [b["name"] for b in resolved["blobs"]] == [old]


def test_the_age_check_does_not_count_batches_outside_the_window_as_new(windowed: Any) -> None:
    # The newest judged run trained on the window, which held only the new batch: the old one is not news (else the
    # age check would ask for a retrain every day that could never train on it).
    _, new = _old_and_new()
    store = clients.store()
    trained = store.ref(LANDING, new)
    entry = ManifestEntry(name=new, url=trained.url, etag=trained.etag, size=trained.size, sha256="0" * 64)
    store.write_manifest(Manifest(model="fraud", run_id="fraud-judged", blobs=(entry,)))
    judged = [Run("fraud", "fraud-judged", "schedule", "t", "e", status="not_promoted")]
    window_start = datetime.now(UTC) - timedelta(seconds=WINDOW_SECONDS)
    news, notes = landing_news(store, "fraud", judged, None, window_start)
    assert news is not None
    assert notes == []
    assert (news.new_blobs, news.since_run) == (0, "fraud-judged")
    unbounded, _ = landing_news(store, "fraud", judged, None)
    assert unbounded is not None
    assert unbounded.new_blobs == 1  # the old batch, which only the window leaves out


def test_a_batch_claimed_for_the_run_trains_in_it_though_it_aged_out_while_waiting(windowed: Any) -> None:
    # Its event claimed it for a request queued behind a long run: left out now, it would never train (a claimed
    # batch starts no other run).
    waited = clients.store().ref(LANDING, _land("2026/02/waited.csv"))
    clients.registry().claim_blobs("fraud", "fraud-window-4", [(waited.url, waited.etag, waited.size)])
    time.sleep(WINDOW_SECONDS + 1.0)
    fresh = _land("2026/03/fresh.csv")
    resolved = windowed("resolve_run_blobs", _request("fraud-window-4"))
    assert sorted(b["name"] for b in resolved["blobs"]) == sorted([waited.name, fresh])
    other = windowed("resolve_run_blobs", _request("fraud-window-5"))  # another run: the window alone
    assert [b["name"] for b in other["blobs"]] == [fresh]


def test_the_claims_a_listing_lacks_are_named_by_landing_name_and_quoted_etag() -> None:
    listed = [("fraud/a.csv", '"0x1"')]
    claimed = [
        ("https://acct.blob.core.windows.net/landing/fraud/a.csv", "0x1"),  # listed (eTag spelled bare)
        ("https://acct.blob.core.windows.net/landing/fraud/a.csv", '"0x2"'),  # a version the listing lacks
        ("https://acct.dfs.core.windows.net/landing/fraud/b.csv", '"0x3"'),  # a Data Lake spelling of landing
        ("https://acct.blob.core.windows.net/quarantine/fraud/c.csv", '"0x4"'),  # not in landing
        ("not a url", '"0x5"'),
    ]
    assert claims_left_out(claimed, listed, LANDING) == [("fraud/a.csv", '"0x2"'), ("fraud/b.csv", '"0x3"')]
