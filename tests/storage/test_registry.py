"""The registry through the real azure-data-tables SDK against Azurite."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.registry import (
    CLAIMS_INDEXED_SINCE,
    TABLES,
    Candidate,
    Champion,
    ConcurrencyError,
    ModelVersion,
    Registry,
    RegistryError,
    RolloutStep,
    Run,
    run_id_for,
)

pytestmark = pytest.mark.azurite


def _run(model: str, key: str = "evt-1", **kw: object) -> Run:
    fields: dict[str, object] = {
        "trigger_kind": "blob_created",
        "trigger_reason": "new data in landing",
        "trigger_event_id": key,
    } | kw
    return Run(model=model, run_id=run_id_for(model, key), **fields)  # type: ignore[arg-type]


def test_table_names_are_alphanumeric() -> None:
    assert TABLES == ("PerennialRuns", "PerennialModels")
    assert all(t.isalnum() for t in TABLES)


def test_run_id_is_a_function_of_the_trigger(model: str) -> None:
    assert run_id_for(model, "evt-1") == run_id_for(model, "evt-1")
    assert run_id_for(model, "evt-1") != run_id_for(model, "evt-2")


def test_every_record_type_round_trips(registry: Registry, model: str) -> None:
    run = registry.create_run(_run(model, manifest_url="http://x/manifests/m/r.json", decision_reasons=["a", "b"]))
    assert run.etag
    assert registry.get_run(model, run.run_id) == run

    candidates = registry.save_candidates(
        [
            Candidate(model, run.run_id, "c0", params={"lr": 0.01, "hidden": 64}, rationale="champion's params"),
            Candidate(model, run.run_id, "c1", params={"lr": 0.003, "hidden": 128}, rationale="sobol point 1"),
        ]
    )
    assert [c.candidate_id for c in candidates] == ["c0", "c1"]
    assert candidates[1].params == {"lr": 0.003, "hidden": 128}
    assert registry.require_run(model, run.run_id).candidate_ids == ["c0", "c1"]
    done = registry.save_candidate(
        replace(candidates[0], status="completed", job_name="job-abc", metrics={"pr_auc": 0.81})
    )
    assert registry.candidates(model, run.run_id)[0] == done

    version = registry.register_version(
        ModelVersion(
            model=model,
            version="3",
            run_id=run.run_id,
            candidate_id="c0",
            trigger_kind="blob_created",
            trigger_reason="new data",
            trigger_event_id="evt-1",
            manifest_url="http://x/manifests/m/r.json",
            manifest_sha256="ef" * 32,
            data_files=1,
            data_bytes=10,
            data_hashes={"http://x/landing/m/a.csv": "ab" * 32},  # as versions before 2026-11-30 recorded
            code_version="git:abc123",
            environment="perennial-train:7",
            params={"lr": 0.01},
            metrics={"pr_auc": 0.81, "roc_auc": 0.97},
            evaluation={"champion": {"pr_auc": 0.78}, "p_value": 0.01},
        )
    )
    assert registry.version(model, "3") == version
    assert registry.register_version(replace(version, code_version="other")) == version, "re-register is a no-op"

    step = registry.record_rollout_step(
        RolloutStep(model, run.run_id, 1, "traffic-10", {"blue": 90, "green": 10}, {}, "pass", {"p95_ms": 41.5})
    )
    assert registry.rollout_steps(model, run.run_id) == [step]
    assert registry.deciding_step(model, run.run_id) == step, "no failure yet: the last step"
    failed = registry.record_rollout_step(
        RolloutStep(model, run.run_id, 2, "traffic-50", {"blue": 50, "green": 50}, {}, "fail", {"p95_ms": 900.0})
    )
    rollback = registry.record_rollout_step(
        RolloutStep(model, run.run_id, 3, "rollback", {"blue": 100}, {}, "pass", {})
    )
    assert registry.deciding_step(model, run.run_id) == failed, "the failed analysis, not the rollback after it"

    claim = registry.claim_blobs(model, run.run_id, [("http://x/landing/m/a.csv", '"0x1"', 10)])
    assert [b.run_id for b in claim.claimed] == [run.run_id]
    assert registry.seen(model, "http://x/landing/m/a.csv", '"0x1"') == claim.claimed[0]

    champion = registry.set_champion(Champion(model, "3", run.run_id, deployment="green"))
    assert registry.champion(model) == champion

    saved = registry.update_run(model, run.run_id, lambda r: replace(r, registered_version="3", status="succeeded"))
    lineage = registry.lineage(model, run.run_id)
    assert lineage.run == saved
    assert lineage.version == version
    assert [c.candidate_id for c in lineage.candidates] == ["c0", "c1"]
    assert lineage.rollout == [step, failed, rollback]
    assert [b.url for b in lineage.blobs] == ["http://x/landing/m/a.csv"]


def test_redelivered_trigger_gets_the_existing_run(registry: Registry, model: str) -> None:
    first = registry.create_run(_run(model))
    again = registry.create_run(_run(model, trigger_reason="redelivered"))
    assert again == first


def test_stale_etag_is_refused_not_lost(registry: Registry, model: str) -> None:
    run = registry.create_run(_run(model))
    a = registry.require_run(model, run.run_id)
    b = registry.require_run(model, run.run_id)
    registry.save_run(replace(a, stage="training"))
    with pytest.raises(ConcurrencyError) as info:
        registry.save_run(replace(b, stage="evaluating"))
    assert "re-read" in info.value.hint
    assert registry.require_run(model, run.run_id).stage == "training"


def test_concurrent_updates_all_land_through_the_retry_helper(registry: Registry, model: str) -> None:
    run = registry.create_run(_run(model))
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(5):
                registry.update_run(
                    model,
                    run.run_id,
                    lambda r, n=f"{name}-{i}": replace(r, decision_reasons=[*r.decision_reasons, n]),
                    attempts=50,
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{t}",)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    reasons = registry.require_run(model, run.run_id).decision_reasons
    assert sorted(reasons) == sorted(f"w{t}-{i}" for t in range(3) for i in range(5)), "an update was lost"


def test_concurrent_promotion_is_detected(registry: Registry, model: str) -> None:
    registry.set_champion(Champion(model, "1", "r1"))
    with pytest.raises(ConcurrencyError):
        registry.set_champion(Champion(model, "2", "r2"))  # no etag: thinks there is no champion yet
    current = registry.champion(model)
    assert current is not None
    promoted = registry.set_champion(Champion(model, "2", "r2", previous_version="1", etag=current.etag))
    with pytest.raises(ConcurrencyError):
        registry.set_champion(Champion(model, "3", "r3", etag=current.etag))
    assert registry.champion(model) == promoted


def test_runs_are_listed_newest_first(registry: Registry, model: str) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in (2, 0, 1):
        registry.create_run(_run(model, f"evt-{i}", created_at=t0 + timedelta(hours=i)))
    assert [r.trigger_event_id for r in registry.runs(model)] == ["evt-2", "evt-1", "evt-0"]
    assert [r.trigger_event_id for r in registry.runs(model, limit=1)] == ["evt-2"]


def test_runs_page_after_a_run_id(registry: Registry, model: str) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(5):
        registry.create_run(_run(model, f"evt-{i}", created_at=t0 + timedelta(hours=i)))
    first = registry.runs(model, limit=2)
    second = registry.runs(model, limit=2, after=first[-1].run_id)
    third = registry.runs(model, limit=2, after=second[-1].run_id)
    pages = [[r.trigger_event_id for r in page] for page in (first, second, third)]
    assert pages == [["evt-4", "evt-3"], ["evt-2", "evt-1"], ["evt-0"]]
    with pytest.raises(RegistryError, match="no run 'nope'"):
        registry.runs(model, after="nope")


def test_a_short_listing_fetches_the_large_values_of_the_runs_it_returns_only(
    registry: Registry, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every listing and 409 check reads the newest few of a history that grows by a run a day or more.
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(6):
        reasons = [f"{i}" * 40_000]  # spilled to blob storage (over Azure's 64 KiB string limit)
        registry.create_run(_run(model, f"evt-{i}", created_at=t0 + timedelta(hours=i), decision_reasons=reasons))
    fetched: list[str] = []
    load = registry.runs_table.load
    assert load is not None
    monkeypatch.setattr(registry.runs_table, "load", lambda name: fetched.append(name) or load(name))
    newest = registry.runs(model, limit=2)
    assert [r.trigger_event_id for r in newest] == ["evt-5", "evt-4"]
    assert [r.decision_reasons[0][:3] for r in newest] == ["555", "444"]
    assert len(fetched) == 2
    assert [r.trigger_event_id for r in registry.runs(model)][-1] == "evt-0"
    assert len(fetched) == 8


def test_active_runs_are_the_pending_and_running_ones_newest_first(registry: Registry, model: str) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = {"evt-0": "promoted", "evt-1": "running", "evt-2": "failed", "evt-3": "pending"}
    for i, (key, status) in enumerate(statuses.items()):
        registry.create_run(_run(model, key, status=status, created_at=t0 + timedelta(hours=i)))
    assert [r.trigger_event_id for r in registry.active_runs(model)] == ["evt-3", "evt-1"]
    newest = run_id_for(model, "evt-3")
    assert [r.trigger_event_id for r in registry.active_runs(model, excluding=newest)] == ["evt-1"]
    assert registry.active_runs("other-model") == []


def test_versions_sort_numerically(registry: Registry, model: str) -> None:
    for v in ("2", "10", "9"):
        registry.register_version(ModelVersion(model, v, "r", "c", "manual", "", "", ""))
    assert [v.version for v in registry.versions(model)] == ["10", "9", "2"]


def test_a_blob_version_is_claimed_by_one_run_only(registry: Registry, model: str) -> None:
    blobs = [(f"http://x/landing/{model}/{i}.csv", '"0x1"', i) for i in range(3)]
    first = registry.claim_blobs(model, "run-a", blobs[:2])
    second = registry.claim_blobs(model, "run-b", blobs)
    assert len(first.claimed) == 2
    assert [b.url for b in second.claimed] == [blobs[2][0]]
    assert sorted(b.url for b in second.already_seen) == sorted(u for u, _, _ in blobs[:2])
    assert {b.run_id for b in second.already_seen} == {"run-a"}
    # The same blob with a new eTag (overwritten) is new data.
    assert registry.claim_blobs(model, "run-c", [(blobs[0][0], '"0x2"', 0)]).claimed


def test_a_runs_claims_are_one_range_read_not_a_scan_of_every_claim(registry: Registry, model: str) -> None:
    """A model claims about a thousand blob versions a day: finding one run's among a year of them was a partition
    scan the service filters (hundreds of requests for `perennial run`). Each claim now has a row under its run."""
    mine = [(f"http://x/landing/{model}/a{i}.csv", '"0x1"', i) for i in range(120)]  # past a transaction's 50 claims
    registry.claim_blobs(model, "run-a", mine)
    registry.claim_blobs(model, "run-b", [(f"http://x/landing/{model}/b.csv", '"0x1"', 1)])
    prefixes: list[str] = []
    query = registry.runs_table.query

    def watched(pk: str, prefix: str = "", *args: Any, **kwargs: Any) -> Any:
        prefixes.append(prefix)
        return query(pk, prefix, *args, **kwargs)

    registry.runs_table.query = watched  # type: ignore[method-assign]
    found = registry.run_blobs(model, "run-a", CLAIMS_INDEXED_SINCE)
    assert sorted(b.url for b in found) == sorted(u for u, _, _ in mine)
    assert prefixes == ["claimed:run-a:"], "no scan of the model's claims"

    # A run in flight across the upgrade claimed some blobs before these rows existed and some after: an older run's
    # claims are the index and the scan together.
    for row in list(query(model, "claimed:run-b:")):
        registry.runs_table.delete(model, row["RowKey"])
    registry.claim_blobs(model, "run-b", [(f"http://x/landing/{model}/b2.csv", '"0x1"', 1)])
    older = datetime(2026, 11, 30, tzinfo=UTC)
    found = sorted(b.url for b in registry.run_blobs(model, "run-b", older))
    assert found == [f"http://x/landing/{model}/b.csv", f"http://x/landing/{model}/b2.csv"]
    assert sorted(b.url for b in registry.run_blobs(model, "run-b")) == found  # of unknown age: the same


def test_missing_run_and_bad_ids_give_typed_errors(registry: Registry, model: str) -> None:
    with pytest.raises(RegistryError):
        registry.require_run(model, "nope")
    with pytest.raises(RegistryError):
        registry.get_run(model, "a/b")


def test_registry_from_settings_spills_large_values_without_extra_wiring(
    azurite_connection_string: str, model: str, store: object
) -> None:
    from shared.settings import StorageSettings

    registry = Registry.from_settings(StorageSettings(azurite_connection_string, None, None, None, None))
    registry.ensure_tables()
    reasons = ["r" * 40_000]  # 80 KiB in UTF-16: over Azure's 64 KiB string limit
    run = registry.create_run(_run(model, decision_reasons=reasons))
    assert registry.require_run(model, run.run_id).decision_reasons == reasons
