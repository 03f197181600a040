"""Listing a model's runs costs a page, not the history: the newest-first index, through the real SDK on Azurite.

A schedule alone adds a run an hour, and every listing, alert, 409 check and housekeeping tick asks for the newest
few runs or the active ones. These tests count the rows the service hands back, so they fail if a listing reads the
model's whole history again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.registry import Registry, Run, run_id_for
from shared.storage import BlobStore

from .conftest import storage_settings

pytestmark = pytest.mark.azurite

HISTORY = 120


def _run(model: str, key: str, created_at: datetime, status: str = "promoted") -> Run:
    return Run(
        model=model,
        run_id=run_id_for(model, key),
        trigger_kind="schedule",
        trigger_reason="hourly",
        trigger_event_id=key,
        status=status,
        created_at=created_at,
    )


class RowCounter:
    """Counts the rows the service returns to ``registry`` (queries and point reads), without changing them."""

    def __init__(self, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows = 0
        client = registry.runs_table.client
        query, get = client.query_entities, client.get_entity

        def counted_query(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for row in query(*args, **kwargs):
                self.rows += 1
                yield row

        def counted_get(*args: Any, **kwargs: Any) -> Any:
            self.rows += 1
            return get(*args, **kwargs)

        monkeypatch.setattr(client, "query_entities", counted_query)
        monkeypatch.setattr(client, "get_entity", counted_get)


@pytest.fixture
def history(registry: Registry, model: str) -> datetime:
    """``HISTORY`` finished runs an hour apart, the newest at the returned time."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(HISTORY):
        registry.create_run(_run(model, f"tick-{i}", t0 + timedelta(hours=i)))
    return t0 + timedelta(hours=HISTORY - 1)


def test_a_page_of_runs_reads_that_page_not_the_history(
    registry: Registry, model: str, history: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.runs(model, limit=1)  # the partition's index check, once per process
    counter = RowCounter(registry, monkeypatch)
    newest = registry.runs(model, limit=3)
    assert [r.trigger_event_id for r in newest] == [f"tick-{HISTORY - 1}", f"tick-{HISTORY - 2}", f"tick-{HISTORY - 3}"]
    assert counter.rows == 6  # three index rows, three runs
    counter.rows = 0
    page = registry.runs(model, limit=3, after=newest[-1].run_id)
    assert [r.trigger_event_id for r in page] == [f"tick-{HISTORY - 4}", f"tick-{HISTORY - 5}", f"tick-{HISTORY - 6}"]
    assert counter.rows == 7  # the cursor's run, three index rows, three runs


def test_active_runs_cross_the_wire_alone_however_old(
    registry: Registry, model: str, history: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run stuck since before the newest twenty (a long rollout, a lost coordinator) still blocks and is found.
    stuck = registry.create_run(_run(model, "stuck", datetime(2025, 12, 1, tzinfo=UTC), status="running"))
    queued = registry.create_run(_run(model, "queued", history + timedelta(minutes=5), status="pending"))
    counter = RowCounter(registry, monkeypatch)
    assert [r.run_id for r in registry.active_runs(model)] == [queued.run_id, stuck.run_id]
    assert counter.rows == 2
    assert [r.run_id for r in registry.active_runs(model, excluding=queued.run_id)] == [stuck.run_id]


def test_runs_recorded_before_the_index_are_indexed_once_and_listed_once(
    azurite_connection_string: str, store: BlobStore, registry: Registry, model: str
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(5):
        registry.create_run(_run(model, f"old-{i}", t0 + timedelta(hours=i)))
    # As an older Perennial left them: run rows without index rows, and no marker.
    for row in list(registry.runs_table.query(model, "recent:")):
        registry.runs_table.delete(model, row["RowKey"])
    registry.create_run(_run(model, "new", t0 + timedelta(hours=9)))  # by this version: indexed as it is created

    fresh = Registry.from_settings(storage_settings(azurite_connection_string), payloads=store)
    listed = [r.trigger_event_id for r in fresh.runs(model, limit=10)]
    assert listed == ["new", "old-4", "old-3", "old-2", "old-1", "old-0"]
    assert len(list(registry.runs_table.query(model, "recent:"))) == 6  # the new run's row was not written twice
    assert registry.runs_table.get(model, "index:recent") is not None
    assert [
        r.trigger_event_id
        for r in Registry.from_settings(storage_settings(azurite_connection_string), payloads=store).runs(
            model, limit=2, after=run_id_for(model, "old-4")
        )
    ] == ["old-3", "old-2"]


def test_runs_created_in_the_same_microsecond_are_each_listed_once_across_pages(registry: Registry, model: str) -> None:
    same = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    ids = {registry.create_run(_run(model, f"burst-{i}", same)).run_id for i in range(5)}
    seen: list[str] = []
    page = registry.runs(model, limit=2)
    while page:
        seen += [r.run_id for r in page]
        page = registry.runs(model, limit=2, after=page[-1].run_id)
    assert sorted(seen) == sorted(ids)
    assert seen == sorted(ids)  # ties are listed by run id
    assert [r.run_id for r in registry.runs(model)] == seen  # the unpaged listing agrees


def test_a_page_larger_than_the_service_returns_is_asked_for_in_requests_it_accepts(
    registry: Registry, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Azure answers $top above 1,000 with a 400 (Azurite accepts it): `?limit=1000` asks the registry for 1,001.
    asked: list[int | None] = []
    query = registry.runs_table.client.query_entities

    def spy(*args: Any, **kwargs: Any) -> Iterator[Any]:
        asked.append(kwargs.get("results_per_page"))
        return query(*args, **kwargs)

    registry.create_run(_run(model, "only", datetime(2026, 1, 1, tzinfo=UTC)))
    monkeypatch.setattr(registry.runs_table.client, "query_entities", spy)
    assert len(registry.runs(model, limit=1001)) == 1
    assert asked
    assert max(n for n in asked if n is not None) <= 1000


def test_query_parameters_cannot_replace_the_querys_own(registry: Registry, model: str) -> None:
    with pytest.raises(ValueError, match=r"\['pk'\] are the query's own"):
        list(registry.runs_table.query(model, "run:", where="status eq @pk", parameters={"pk": "other"}))


def test_a_run_whose_creation_time_changes_moves_in_the_listing(registry: Registry, model: str) -> None:
    # The e2e loop ages its runs by two days to leave a cool-down: listings and pages must follow.
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(3):
        registry.create_run(_run(model, f"r{i}", t0 + timedelta(hours=i)))
    newest = run_id_for(model, "r2")
    registry.update_run(model, newest, lambda r: replace(r, created_at=t0 - timedelta(days=2)))
    assert [r.trigger_event_id for r in registry.runs(model, limit=3)] == ["r1", "r0", "r2"]
    assert [r.trigger_event_id for r in registry.runs(model)] == ["r1", "r0", "r2"]
    assert [r.trigger_event_id for r in registry.runs(model, limit=5, after=run_id_for(model, "r0"))] == ["r2"]
    assert len(list(registry.runs_table.query(model, "recent:"))) == 3


def test_claims_can_be_read_back_from_a_point_in_time_only(registry: Registry, model: str) -> None:
    """A training window bounds the claims a listing can meet: a blob written at t was claimed after t."""
    registry.claim_blobs(model, "r-old", [("https://a/landing/m/old.csv", '"0x1"', 10)])
    time.sleep(1.5)
    since = datetime.now(UTC)
    registry.claim_blobs(model, "r-new", [("https://a/landing/m/new.csv", '"0x2"', 10)])
    assert registry.seen_etags(model, claimed_since=since) == {'"0x2"'}
    assert registry.seen_etags(model) == {'"0x1"', '"0x2"'}
