"""A batch's way from landing to a run's manifest, through the app's activities as the host runs them (real blobs
and registry on Azurite):

- what trains is the version that was validated: one overwritten after its validation is left out, not trained;
- every version a run trains on is claimed for it, so a second run does not train on the same data again;
- a file still being written (empty, or an append blob) is not swept into a run and quarantined under its writer;
- a second bad version of a quarantined name goes beside the first, which is not overwritten.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from azure.storage.blob import BlobType

from functions import clients
from perennial_cli.synthetic import fraud_batch
from shared.platform import ComputeSpec
from shared.registry import Run
from shared.storage import LANDING, QUARANTINE
from shared.workflow import BlobItem, RunRequest, TriggerInfo

pytestmark = pytest.mark.azurite
GOOD = fraud_batch(1200, seed=5).to_csv(index=False).encode()
BAD = fraud_batch(1200, seed=6).assign(hour=99).to_csv(index=False).encode()  # out of range: quarantined


def _land(name: str, data: bytes) -> BlobItem:
    clients.store().container(LANDING).upload_blob(f"fraud/{name}", data, overwrite=True)
    ref = clients.store().ref(LANDING, f"fraud/{name}")
    return BlobItem(url=ref.url, container=ref.container, name=ref.name, etag=ref.etag, size=ref.size)


def _resolved(activity: Any, run_id: str) -> list[BlobItem]:
    request = RunRequest(
        model="fraud", run_id=run_id, trigger=TriggerInfo(kind="manual", reason="t", source_event_id=run_id)
    )
    return [BlobItem.load(b) for b in activity("resolve_run_blobs", request.dump())["blobs"]]


def _run(run_id: str) -> None:
    clients.registry().create_run(Run("fraud", run_id, "manual", "t", run_id, status="running", stage="validating"))


def _validate(activity: Any, run_id: str, blob: BlobItem) -> dict[str, Any]:
    outcome: dict[str, Any] = activity("validate_blob", {"model": "fraud", "run_id": run_id, "blob": blob.dump()})
    return outcome


def test_a_batch_overwritten_after_its_validation_is_left_out_not_trained(activity: Any) -> None:
    run_id = "fraud-00000000000000b1"
    _run(run_id)
    first, second = _land("b1-a.csv", GOOD), _land("b1-b.csv", GOOD)
    assert {b.name for b in _resolved(activity, run_id)} >= {first.name, second.name}
    outcomes = [_validate(activity, run_id, blob) for blob in (first, second)]
    assert [o["ok"] for o in outcomes] == [True, True]
    validated = [o["blob"] for o in outcomes]  # as the orchestrator hands them on
    _land("b1-b.csv", BAD)  # the producer re-exports the name after the run validated it

    prepared = activity("prepare_training", {"model": "fraud", "run_id": run_id, "blobs": validated})

    assert "no_data" not in prepared
    manifest = clients.store().read_manifest("fraud", run_id)
    assert [(e.name, e.etag) for e in manifest.blobs] == [(first.name, first.etag)], "only what was validated"
    # A retry of the activity keeps the manifest it wrote.
    again = activity("prepare_training", {"model": "fraud", "run_id": run_id, "blobs": validated})
    assert again["candidates"] == prepared["candidates"]
    assert [e.etag for e in clients.store().read_manifest("fraud", run_id).blobs] == [first.etag]


def test_a_run_whose_every_valid_batch_changed_has_no_data_and_says_why(activity: Any) -> None:
    run_id = "fraud-00000000000000b2"
    blob = _land("b2.csv", GOOD)
    assert _validate(activity, run_id, blob)["ok"] is True
    _land("b2.csv", BAD)
    prepared = activity("prepare_training", {"model": "fraud", "run_id": run_id, "blobs": [blob.dump()]})
    [reason] = prepared["no_data"]
    assert reason.startswith("fraud/b2.csv was left out: blob landing/fraud/b2.csv changed since eTag")


def test_a_batch_overwritten_before_it_was_read_is_skipped_not_quarantined(activity: Any) -> None:
    run_id = "fraud-00000000000000b3"
    listed = _land("b3.csv", GOOD)
    newer = _land("b3.csv", GOOD)  # the new version has its own event and run
    outcome = _validate(activity, run_id, listed)
    assert (outcome["ok"], outcome["skipped"]) == (False, True)
    assert "overwritten since this run listed it" in outcome["summary"]
    assert clients.store().ref(LANDING, "fraud/b3.csv").etag == newer.etag, "the newer version stays in landing"


def test_every_version_a_run_trains_on_is_claimed_for_it(activity: Any) -> None:
    """A batch that landed after the run claimed its work, but before it listed landing, trains in this run: it
    must not start a second run on the same data."""
    run_id = "fraud-00000000000000b4"
    _run(run_id)
    late = _land("b4-late.csv", GOOD)
    outcome = _validate(activity, run_id, late)
    assert outcome["ok"] is True
    activity("prepare_training", {"model": "fraud", "run_id": run_id, "blobs": [outcome["blob"]]})
    claim = clients.registry().seen("fraud", late.url, late.etag)
    assert claim is not None
    assert claim.run_id == run_id
    offered = [b["name"] for w in activity("pending_work", {"model": "fraud"}) for b in w.get("blobs", [])]
    assert late.name not in offered


def test_a_file_still_being_written_is_not_taken_into_a_run(activity: Any) -> None:
    store = clients.store()
    store.container(LANDING).upload_blob("fraud/b5-empty.csv", b"", overwrite=True)  # a Data Lake CreateFile
    appending = store.container(LANDING).get_blob_client("fraud/b5-growing.csv")
    appending.create_append_blob()
    appending.append_block(GOOD[: len(GOOD) // 2])  # the writer has more to append
    names = {b.name for b in _resolved(activity, "fraud-00000000000000b5")}
    assert "fraud/b5-empty.csv" not in names
    assert "fraud/b5-growing.csv" not in names
    assert appending.get_blob_properties().blob_type == BlobType.APPENDBLOB, "left where its writer is writing"


def test_a_second_bad_version_of_a_name_is_quarantined_beside_the_first(activity: Any) -> None:
    store = clients.store()
    monday = _land("daily.csv", BAD)
    assert _validate(activity, "fraud-00000000000000b6", monday)["ok"] is False
    tuesday = _land("daily.csv", BAD.replace(b"99", b"98", 1))
    second = _validate(activity, "fraud-00000000000000b7", tuesday)
    assert second["ok"] is False
    kept = {b.name for b in store.container(QUARANTINE).list_blobs(name_starts_with="fraud/daily.")}
    token = "".join(ch for ch in tuesday.etag if ch.isalnum())
    assert kept == {
        "fraud/daily.csv",
        "fraud/daily.csv.report.json",
        f"fraud/daily.{token}.csv",
        f"fraud/daily.{token}.csv.report.json",
    }
    assert store.read_bytes(store.ref(QUARANTINE, "fraud/daily.csv")) == BAD, "Monday's batch, untouched"
    assert second["quarantined_to"].endswith(f"/quarantine/fraud/daily.{token}.csv")


def test_a_retry_after_the_blob_was_quarantined_gives_the_same_verdict(activity: Any) -> None:
    """validate_blob is retried: an attempt that quarantined the blob (so landing no longer has it) and then failed,
    publishing, must not be read as 'deleted' by the next attempt, which would drop the verdict."""
    run_id = "fraud-00000000000000b8"
    blob = _land("b8.csv", BAD)
    first = _validate(activity, run_id, blob)
    again = _validate(activity, run_id, blob)
    assert (again["ok"], again["skipped"]) == (False, False)
    assert again["quarantined_to"] == first["quarantined_to"]
    assert again["errors"] == first["errors"] > 0


def test_a_bug_while_validating_leaves_the_batch_in_landing_untrained(
    activity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a verdict on the data (no quarantine), and not a failed run either: every later run would fail alike."""
    from functions import activities

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr(activities, "validate", broken)
    blob = _land("b9.csv", GOOD)
    outcome = _validate(activity, "fraud-00000000000000b9", blob)
    assert (outcome["ok"], outcome["skipped"], outcome["quarantined_to"]) == (False, True, None)
    assert "could not be validated (TypeError: unsupported operand type(s)): left in landing" in outcome["summary"]
    assert clients.store().ref(LANDING, blob.name).etag == blob.etag


def test_a_cluster_of_another_vm_size_is_used_and_the_run_says_so(
    activity: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The spec's training.instance_type only creates a missing cluster; jobs run on an existing cluster's own size,
    which prepare_training names in a warning so nobody expects a GPU they do not get."""
    clients.platform().ensure_compute(ComputeSpec("gpu-cluster", instance_type="Standard_D4s_v3"))
    run_id = "fraud-00000000000000b9"
    _run(run_id)
    outcome = _validate(activity, run_id, _land("b9.csv", GOOD))
    with caplog.at_level(logging.WARNING, logger="perennial.activities"):
        prepared = activity("prepare_training", {"model": "fraud", "run_id": run_id, "blobs": [outcome["blob"]]})
    assert "no_data" not in prepared
    [warning] = [r.getMessage() for r in caplog.records if "training.instance_type" in r.getMessage()]
    assert "compute gpu-cluster runs Standard_D4s_v3, not training.instance_type Standard_NC4as_T4_v3" in warning
    assert clients.platform().ensure_compute(ComputeSpec("gpu-cluster")).instance_type == "Standard_D4s_v3"


def test_a_run_whose_batches_hold_no_positive_label_ends_before_any_job(activity: Any) -> None:
    """Positives stopped arriving: each batch only warns (label_imbalance is a warning in fraud.yaml), and taken
    together the training job would have stopped on them after its queue and start-up."""
    run_id = "fraud-00000000000000ba"
    _run(run_id)
    batches = [
        _land(f"ba-{i}.csv", fraud_batch(1200, seed=20 + i).assign(is_fraud=0).to_csv(index=False).encode())
        for i in range(2)
    ]
    first = _validate(activity, run_id, batches[0])  # as the orchestrator does for a first model: the rest on its edges
    payload = {"model": "fraud", "run_id": run_id, "edges": first["edges"]}
    second = activity("validate_blob", {**payload, "blob": batches[1].dump()})
    assert [first["ok"], second["ok"]] == [True, True]
    prepared = activity("prepare_training", {**payload, "blobs": [first["blob"], second["blob"]]})
    [reason] = prepared["no_data"]
    assert reason.startswith("the run's batches together hold no row of the positive class '1' of 'is_fraud'")
    assert "'0' in fraud/ba-0.csv, fraud/ba-1.csv" in reason
    assert clients.registry().candidates("fraud", run_id) == []
