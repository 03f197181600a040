"""Listing a model's runs costs a page, not the history: the newest-first index, through the real SDK on Azurite.

A schedule alone adds a run an hour, and every listing, alert, 409 check and housekeeping tick asks for the newest
few runs or the active ones. These tests count the rows the service hands back, so they fail if a listing reads the
model's whole history again.
"""

from __future__ import annotations

from collections.abc import Iterator
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
