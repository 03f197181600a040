"""A burst whose claims were written but whose run never was: its blobs are found again, not claimed for good.

claim_run writes the claims, then the run record. When the record's write fails past the activity's retries, the
coordinator pauses and asks storage for work again (pending_work), which must release those claims: before, the
blobs counted as trained by a run that does not exist and started no run of their own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions import activities, clients
from shared.registry import Registry, Run

pytestmark = pytest.mark.azurite

BATCH = b"id,amount\n1,2.0\n"


def _blob_work(activity: Any) -> list[str]:
    """The landing blobs pending_work hands the coordinator."""
    return [b["name"] for w in activity("pending_work", {"model": "fraud"}) if w["kind"] == "blobs" for b in w["blobs"]]


def test_blobs_claimed_for_a_run_that_was_never_recorded_are_found_again(
    activity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients.store().upload_landing("fraud", "claimed-then-lost.csv", BATCH)
    work = [w for w in activity("pending_work", {"model": "fraud"}) if w["kind"] == "blobs"]
    assert [b["name"] for b in work[0]["blobs"]] == ["fraud/claimed-then-lost.csv"]

    def table_down(self: Registry, run: Run) -> Run:
        raise RuntimeError("the table service answered 503")

    with monkeypatch.context() as outage:
        outage.setattr(Registry, "create_run", table_down)
        with pytest.raises(RuntimeError, match="503"):
            activity("claim_run", {"model": "fraud", **work[0], "requests": []})
    assert _blob_work(activity) == [], "a claim younger than the grace may belong to a run still on its way"

    monkeypatch.setattr(activities, "ORPHAN_CLAIM_GRACE", timedelta(0))
    assert _blob_work(activity) == ["fraud/claimed-then-lost.csv"]
    run = activity("claim_run", {"model": "fraud", **work[0], "requests": []})
    assert run is not None, "the burst's run starts after all"
    assert [b["name"] for b in run["blobs"]] == ["fraud/claimed-then-lost.csv"]
    assert clients.registry().require_run("fraud", run["run_id"]).status == "running"
    assert _blob_work(activity) == [], "claimed by a recorded run: not released again"


def test_only_claims_of_missing_runs_made_inside_the_window_are_released(activity: Any) -> None:
    registry = clients.registry()
    model = "orphans"
    recorded = Run(model, "orphans-00000000000000a1", "blob_created", "landed", "e1", status="running")
    registry.create_run(recorded)
    registry.claim_blobs(
        model, recorded.run_id, [("https://a.blob.core.windows.net/landing/orphans/kept.csv", "0x1", 9)]
    )
    lost = "orphans-00000000000000a2"
    registry.claim_blobs(
        model,
        lost,
        [
            ("https://a.blob.core.windows.net/landing/orphans/lost-1.csv", "0x2", 9),
            ("https://a.blob.core.windows.net/landing/orphans/lost-2.csv", "0x3", 9),
        ],
    )
    now = datetime.now(UTC)

    assert registry.release_unrecorded_claims(model, now - timedelta(days=1), now - timedelta(minutes=1)) == []
    assert registry.seen_etags(model) == {"0x1", "0x2", "0x3"}, "too young: the lost run may still be recorded"
    assert registry.release_unrecorded_claims(model, now + timedelta(minutes=1), now + timedelta(minutes=2)) == []
    assert registry.seen_etags(model) == {"0x1", "0x2", "0x3"}, "made before the window: left alone"

    released = registry.release_unrecorded_claims(model, now - timedelta(days=1), now + timedelta(minutes=1))
    assert sorted((c.run_id, c.blob_etag) for c in released) == [(lost, "0x2"), (lost, "0x3")]
    assert registry.seen_etags(model) == {"0x1"}
    assert registry.run_blobs(model, lost) == [], "the claims' index rows went with them"
    assert [b.blob_etag for b in registry.run_blobs(model, recorded.run_id)] == ["0x1"]
    again = registry.claim_blobs(
        model, "orphans-00000000000000a3", [("https://a.blob.core.windows.net/landing/orphans/lost-1.csv", "0x2", 9)]
    )
    assert [c.blob_etag for c in again.claimed] == ["0x2"], "a released version can be claimed by the next run"
