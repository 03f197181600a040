"""The schedule's evaluation end to end on Azurite: registry, feedback blobs, scoring logs, a memory publisher."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from functions.alerts import retrain_work
from shared.events import parse_event
from shared.live import (
    ScheduleWindows,
    blocking_run,
    check_model,
    reference_profile_name,
    schedule_event_id,
    schedule_slot,
)
from shared.platform.local import LocalPlatform
from shared.publish import MemoryPublisher, OutboundEvent, PublishError
from shared.registry import Champion, ModelVersion, Registry, Run, run_id_for
from shared.spec import ModelSpec
from shared.storage import MANIFESTS, BlobRef, BlobStore, Manifest
from tests.live.conftest import Scored, settle, write_scored
from tests.live.test_drift import reference_profile, scored

pytestmark = pytest.mark.azurite

BASELINE = {"accuracy": 0.97, "precision": 0.8, "recall": 0.7, "f1": 0.75, "roc_auc": 0.95, "pr_auc": 0.6, "ece": 0.02}


def make_champion(
    registry: Registry,
    store: BlobStore,
    spec: ModelSpec,
    now: datetime,
    *,
    age_days: float,
    reference: bool = False,
    evaluation: dict[str, Any] | None = None,
) -> None:
    registered = now - timedelta(days=age_days)
    registry.register_version(
        ModelVersion(
            model=spec.name,
            version="1",
            run_id="run-1",
            candidate_id="c0",
            trigger_kind="blob_created",
            trigger_reason="data landed",
            trigger_event_id="e-1",
            manifest_url="https://example/manifests/run-1.json",
            metrics=dict(BASELINE),
            evaluation=evaluation or {},
            registered_at=registered,
        )
    )
    registry.set_champion(Champion(spec.name, "1", "run-1", deployment="fraud-v1", since=registered))
    if reference:
        store.put_json(MANIFESTS, reference_profile_name(spec.name, "run-1"), reference_profile(spec).to_dict())


def check(
    spec: ModelSpec,
    now: datetime,
    registry: Registry,
    store: BlobStore,
    platform: LocalPlatform,
    publisher: Any,
    windows: ScheduleWindows | None = None,
) -> Any:
    return check_model(
        spec,
        now,
        registry=registry,
        store=store,
        platform=platform,
        publisher=publisher,
        windows=windows or ScheduleWindows(),
    )


def only_event(publisher: MemoryPublisher) -> OutboundEvent:
    assert len(publisher.events) == 1, [e.data for e in publisher.events]
    return publisher.events[0]


def kinds(event: OutboundEvent) -> list[str]:
    return [r["kind"] for r in event.data["details"]["reasons"]]


def test_an_old_model_is_retrained_and_the_event_goes_through_the_alerts_door(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform
) -> None:
    now = datetime.now(UTC)
    make_champion(registry, store, spec, now, age_days=40)
    publisher = MemoryPublisher()
    result = check(spec, now, registry, store, platform, publisher)
    assert result.action == "requested"
    event = only_event(publisher)
    slot = schedule_slot(now)
    assert event.id == result.event_id == schedule_event_id(spec.name, slot) == f"schedule-{spec.name}-{slot}"
    assert event.event_type == "Perennial.RetrainRequested"
    assert kinds(event) == ["age"]
    assert event.data["requested_by"] == "schedule"
    assert "40.0 days old > max_model_age_days 30" in event.data["reason"]
    assert event.data["details"]["reasons"][0]["evidence"]["max_model_age_days"] == 30
    assert any("no live labels" in n for n in event.data["details"]["notes"])

    # Back through Event Grid: alerts turns it into a retrain with a run id fixed by the event id.
    trigger = parse_event(event.to_dict(), [spec.name])
    assert (trigger.kind, trigger.model, trigger.actionable) == ("retrain_requested", spec.name, True)
    assert trigger.reason == event.data["reason"]
    assert retrain_work(trigger)["run_id"] == run_id_for(spec.name, f"retrain_requested|{event.id}")


def test_the_same_slot_publishes_once_and_the_next_slot_again(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform
) -> None:
    now = datetime.now(UTC).replace(minute=5)
    make_champion(registry, store, spec, now, age_days=40)
    publisher = MemoryPublisher()
    assert check(spec, now, registry, store, platform, publisher).action == "requested"
    again = check(spec, now + timedelta(minutes=30), registry, store, platform, publisher)  # a redelivered tick
    assert again.action == "already_requested"
    assert again.event_id == schedule_event_id(spec.name, schedule_slot(now))
    assert len(publisher.events) == 1
    # No run was started (nothing consumes the memory publisher), so the next hour asks again.
    assert check(spec, now + timedelta(hours=1), registry, store, platform, publisher).action == "requested"
    assert [e.id for e in publisher.events] == [
        schedule_event_id(spec.name, schedule_slot(now)),
        schedule_event_id(spec.name, schedule_slot(now + timedelta(hours=1))),
    ]


def _labelled_traffic(
    platform: LocalPlatform, store: BlobStore, spec: ModelSpec, now: datetime, informative: bool, n: int = 300
) -> None:
    """``n`` one-row requests with P(positive); labels that follow the scores (healthy) or ignore them (worse)."""
    rng = np.random.default_rng(11)
    y = (rng.random(n) < 0.3).astype(int)
    p = np.where(y == 1, 0.6 + 0.4 * rng.random(n), 0.5 * rng.random(n)) if informative else rng.random(n)
    write_scored(
        platform,
        "fraud-v1",
        [
            Scored(f"q{i}", now - timedelta(hours=30, seconds=i), [{"amount": 10.0}], [int(p[i] >= 0.5)], [float(p[i])])
            for i in range(n)
        ],
    )
    body = "request_id,label\n" + "".join(f"q{i},{y[i]}\n" for i in range(n))
    store.upload_feedback(spec.name, "labels/day.csv", body.encode())


def test_a_live_performance_drop_asks_for_a_retrain(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform
) -> None:
    make_champion(registry, store, spec, datetime.now(UTC), age_days=1)
    _labelled_traffic(platform, store, spec, datetime.now(UTC), informative=False)
    settle()
    now = datetime.now(UTC)
    publisher = MemoryPublisher()
    result = check(spec, now, registry, store, platform, publisher)
    assert result.action == "requested", result.summary
    event = only_event(publisher)
    assert kinds(event) == ["performance"]
    evidence = event.data["details"]["reasons"][0]["evidence"]
    assert (evidence["metric"], evidence["baseline"], evidence["labelled"]) == ("pr_auc", 0.6, 300)
    assert evidence["value"] < 0.55
    assert result.evidence["live"]["labelled"] == 300


def test_the_drop_is_judged_against_the_holdout_evaluation(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform
) -> None:
    """Validation pr_auc 0.6 chose the candidate (optimistic); on the holdout it scored as it does live."""
    make_champion(registry, store, spec, datetime.now(UTC), age_days=1, evaluation={"challenger": {"pr_auc": 0.33}})
    _labelled_traffic(platform, store, spec, datetime.now(UTC), informative=False)
    settle()
    publisher = MemoryPublisher()
    result = check(spec, datetime.now(UTC), registry, store, platform, publisher)
    assert result.action == "no_retrain", result.summary
    assert result.evidence["baseline"] == "holdout"
    assert publisher.events == []


def _manifest(store: BlobStore, spec: ModelSpec, run_id: str, blobs: Sequence[BlobRef]) -> None:
    store.write_manifest(Manifest(spec.name, run_id, tuple(store.manifest_entry(b) for b in blobs)))


def test_age_asks_only_when_data_landed_since_the_newest_judged_run(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform
) -> None:
    """Every run trains on the whole landing folder: an old champion with no new data would be retrained on the
    same data each day (after the cool-down), never promote, and stay old."""
    now = datetime.now(UTC)
    first = store.upload_landing(spec.name, "day1.csv", b"amount,is_fraud\n1,0\n")
    make_champion(registry, store, spec, now, age_days=40)
    _manifest(store, spec, "run-1", [first])
    publisher = MemoryPublisher()
    stale = check(spec, now, registry, store, platform, publisher)
    assert stale.action == "no_retrain", stale.summary
    assert "no data landed since run run-1" in stale.summary
    assert stale.evidence["landing"] == {"new_blobs": 0, "since_run": "run-1"}

    second = store.upload_landing(spec.name, "day2.csv", b"amount,is_fraud\n2,1\n")
    later = now + timedelta(hours=1)
    assert check(spec, later, registry, store, platform, publisher).action == "requested"
    assert kinds(only_event(publisher)) == ["age"]

    # That retrain trained on both blobs and did not promote: no new data since, so no more age requests.
    registry.create_run(_run(spec, "run-2", "not_promoted", later))
    _manifest(store, spec, "run-2", [first, second])
    again = check(spec, later + timedelta(days=1, hours=1), registry, store, platform, publisher)
    assert again.action == "no_retrain", again.summary
    assert "no data landed since run run-2" in again.summary
    assert len(publisher.events) == 1


def test_a_healthy_model_is_left_alone(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform
) -> None:
    make_champion(registry, store, spec, datetime.now(UTC), age_days=1, reference=True)
    _labelled_traffic(platform, store, spec, datetime.now(UTC), informative=True)
    write_scored(
        platform,
        "fraud-v1",
        [
            Scored(r.request_id, datetime.now(UTC) - timedelta(minutes=30), list(r.inputs), list(r.predictions))
            for r in scored(600, seed=2)
        ],
    )
    settle()
    publisher = MemoryPublisher()
    result = check(spec, datetime.now(UTC), registry, store, platform, publisher)
    assert result.action == "no_retrain", result.summary
    assert publisher.events == []
    assert result.evidence["live"]["pr_auc"] > 0.9
    assert result.evidence["drift"]["drifted"] is False


@pytest.mark.parametrize("made_champion_by", ["its training run", "a later rollback run"])
def test_drifted_scoring_inputs_ask_for_a_retrain(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform, made_champion_by: str
) -> None:
    now = datetime.now(UTC)
    make_champion(registry, store, spec, now, age_days=1, reference=True)
    if made_champion_by == "a later rollback run":
        # The training profile stays under the run that trained version 1, not the run that restored it.
        current = registry.champion(spec.name)
        assert current is not None
        registry.set_champion(replace(current, run_id="fraud-rollback-1", since=now - timedelta(hours=2)))
    write_scored(
        platform,
        "fraud-v1",
        [
            Scored(r.request_id, now - timedelta(minutes=30), list(r.inputs), list(r.predictions))
            for r in scored(600, seed=3, drift=1.0)
        ],
    )
    publisher = MemoryPublisher()
    result = check(spec, now, registry, store, platform, publisher)
    assert result.action == "requested", result.summary
    event = only_event(publisher)
    assert kinds(event) == ["drift"]
    assert "amount" in event.data["details"]["reasons"][0]["evidence"]["drifted_columns"]
    assert result.evidence["drift"]["rows"] == 600


def _run(spec: ModelSpec, run_id: str, status: str, created: datetime) -> Run:
    return Run(spec.name, run_id, "manual", "asked", "e", status=status, stage="training", created_at=created)


def test_a_model_in_training_gets_no_request(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform
) -> None:
    now = datetime.now(UTC)
    make_champion(registry, store, spec, now, age_days=40)
    registry.create_run(_run(spec, "run-2", "running", now - timedelta(days=3)))
    publisher = MemoryPublisher()
    result = check(spec, now, registry, store, platform, publisher)
    assert result.action == "skipped"
    assert "run-2 is running" in result.summary
    assert publisher.events == []


def test_a_recent_run_cools_the_model_down(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform
) -> None:
    """A retrain that did not promote leaves an old champion old: without a cool-down it would ask hourly."""
    now = datetime.now(UTC)
    make_champion(registry, store, spec, now, age_days=40)
    registry.create_run(_run(spec, "run-2", "not_promoted", now - timedelta(hours=2)))
    publisher = MemoryPublisher()
    result = check(spec, now, registry, store, platform, publisher)
    assert result.action == "skipped"
    assert "cooling down" in result.summary
    assert check(spec, now + timedelta(hours=23), registry, store, platform, publisher).action == "requested"
    assert len(publisher.events) == 1


def test_a_bad_upload_does_not_cool_the_model_down(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform
) -> None:
    """A run of landed data whose every new batch was quarantined trained nothing: the old champion is as old."""
    now = datetime.now(UTC)
    make_champion(registry, store, spec, now, age_days=40)
    bad = replace(_run(spec, "run-bad", "no_valid_data", now - timedelta(hours=2)), trigger_kind="blob_created")
    registry.create_run(bad)
    assert check(spec, now, registry, store, platform, MemoryPublisher()).action == "requested"


def test_no_champion_no_request(registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform) -> None:
    publisher = MemoryPublisher()
    assert check(spec, datetime.now(UTC), registry, store, platform, publisher).action == "skipped"
    assert publisher.events == []


class FailingPublisher:
    def publish(self, events: Sequence[OutboundEvent]) -> None:
        raise PublishError("Event Grid answered 503", "try later")


def test_a_failed_publish_releases_the_slot(
    registry: Registry, store: BlobStore, spec: ModelSpec, platform: LocalPlatform
) -> None:
    now = datetime.now(UTC)
    make_champion(registry, store, spec, now, age_days=40)
    failed = check(spec, now, registry, store, platform, FailingPublisher())
    assert failed.action == "failed"
    assert "503" in failed.summary
    publisher = MemoryPublisher()
    assert check(spec, now, registry, store, platform, publisher).action == "requested"
    assert len(publisher.events) == 1


def test_blocking_run_rules() -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    spec_name = "fraud"

    def run(status: str, hours_ago: float) -> Run:
        return Run(
            spec_name, f"r-{status}", "manual", "x", "e", status=status, created_at=now - timedelta(hours=hours_ago)
        )

    assert blocking_run([], now, timedelta(hours=24)) is None
    assert blocking_run([run("succeeded", 30)], now, timedelta(hours=24)) is None
    assert "pending" in (blocking_run([run("pending", 100)], now, timedelta(hours=24)) or "")
    assert "cooling down" in (blocking_run([run("failed", 1)], now, timedelta(hours=24)) or "")
    assert blocking_run([run("failed", 1)], now, timedelta(0)) is None


def test_the_timer_is_glue(
    registry: Registry,
    store: BlobStore,
    spec: ModelSpec,
    platform: LocalPlatform,
    monkeypatch: pytest.MonkeyPatch,
    app_functions: dict[str, Any],
) -> None:
    from azure.functions.timer import TimerRequest

    import functions.schedule as schedule
    from shared.runtime import Runtime, get_runtime

    timer = app_functions["retrain_schedule"]
    trigger = timer.get_trigger()
    assert trigger.type == "timerTrigger"
    assert trigger.schedule == get_runtime().settings.retrain_schedule == "0 0 * * * *"

    make_champion(registry, store, spec, datetime.now(UTC), age_days=40)
    publisher = MemoryPublisher()
    runtime = Runtime(settings=get_runtime().settings, specs={spec.name: spec})
    monkeypatch.setattr(schedule, "get_runtime", lambda: runtime)
    monkeypatch.setattr(schedule.clients, "registry", lambda: registry)
    monkeypatch.setattr(schedule.clients, "store", lambda: store)
    monkeypatch.setattr(schedule.clients, "platform", lambda: platform)
    monkeypatch.setattr(schedule.clients, "publisher", lambda: publisher)
    timer.get_user_function()(TimerRequest(past_due=True))
    assert kinds(only_event(publisher)) == ["age"]
