"""The retraining loop end to end: blobs land → one run → candidates → evaluated → registered → shipped."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from perennial_cli.main import app
from perennial_cli.synthetic import fraud_batch
from tests.e2e.harness import KEY, PerennialHost

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.timeout(600)]


def _csv(rows: int, seed: int, start: int = 0, drift: float = 0.0) -> bytes:
    return fraud_batch(rows, seed=seed, drift=drift, start_id=start).to_csv(index=False).encode()


def _waiting(host: PerennialHost) -> dict[str, object] | None:
    [fraud] = [m for m in host.http.get("/api/models").json()["models"] if m["model"] == "fraud"]
    return fraud["waiting"]  # type: ignore[no-any-return]


def test_first_blob_trains_registers_with_lineage_and_ships(perennial: PerennialHost) -> None:
    perennial.land("batch-001.csv", _csv(3000, seed=1))
    # While the coordinator waits for landing to be quiet, `models` says what waits and when the run starts.
    waiting = perennial.wait_for("the coordinator to collect the batch", lambda: _waiting(perennial), advance=0)
    assert waiting["blobs"] == 1
    assert str(waiting["starts_at"]) <= str(waiting["deadline"])
    env = {"PERENNIAL_HOST_URL": perennial.base_url, "PERENNIAL_FUNCTION_KEY": KEY, "COLUMNS": "200"}
    shown = CliRunner().invoke(app, ["models"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "fraud: 1 landed blob(s) wait for the next run, which starts at " in shown.output
    assert "unless another lands first (" in shown.output
    run = perennial.wait_for("the first run to finish", lambda: (perennial.finished_runs() or [None])[0])
    detail = perennial.run(run["run_id"])
    assert detail["status"] == "promoted", detail
    assert detail["trigger"]["kind"] == "blob_created"
    assert "batch-001.csv" in detail["trigger"]["reason"]
    assert len(detail["candidates"]) == 2
    assert all(c["status"] == "completed" and "pr_auc" in c["metrics"] for c in detail["candidates"])
    version = detail["version"]
    assert version is not None
    assert version["run_id"] == run["run_id"]
    assert version["manifest_url"].endswith(f"/manifests/fraud/{run['run_id']}.json")
    stored = perennial.store.stored_manifest("fraud", run["run_id"])
    assert (version["manifest_sha256"], version["data_files"]) == (stored.sha256, 1), "the version pins its manifest"
    assert version["data_bytes"] == stored.manifest.total_bytes > 0
    assert all(len(entry.sha256) == 64 for entry in stored.manifest.blobs), "and the manifest pins each blob"
    assert version["data_hashes"] == {}, "no per-blob list in the version's record: it is read on every tick"
    assert version["params"]["lr"] in (0.003, 0.01)
    assert version["metrics"]["pr_auc"] > 0
    assert version["evaluation"]["champion"] is None
    assert version["evaluation"]["compared_with"] is None, "a first model beat no champion"
    # The run says which candidate the holdout scored and what it scored: what the decision rests on.
    assert detail["evaluation"]["candidate"] == version["candidate_id"]
    assert detail["evaluation"]["challenger"]["pr_auc"] == version["evaluation"]["challenger"]["pr_auc"]
    assert version["code_version"]
    assert "torch" in json.loads(version["environment"])  # the job's package versions, from its model card
    steps = [s["step"] for s in detail["rollout"]]
    assert steps[:2] == ["deploy", "smoke"]
    models = perennial.http.get("/api/models").json()["models"]
    assert models[0]["champion"]["version"] == version["version"]


def _blob_created(perennial: PerennialHost, name: str, event_id: str) -> dict[str, object]:
    """A Microsoft.Storage.BlobCreated event (Event Grid schema) for a blob that is really in landing."""
    ref = perennial.store.ref("landing", f"fraud/{name}")
    return {
        "id": event_id,
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/landing/blobs/fraud/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-11-22T10:00:00Z",
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {
            "api": "PutBlob",
            "clientRequestId": event_id,
            "requestId": event_id,
            "eTag": ref.etag,
            "contentType": "text/csv",
            "contentLength": ref.size,
            "blobType": "BlockBlob",
            "url": ref.url,
            "sequencer": f"{event_id:0>32}"[:32],
            "storageDiagnostics": {"batchId": event_id},
        },
    }


def test_event_storm_makes_exactly_one_run_with_each_blob_once(perennial: PerennialHost) -> None:
    import random

    names = [f"storm-{i:02d}.csv" for i in range(50)]
    for i, name in enumerate(names):
        perennial.land(name, _csv(600, seed=100 + i, start=i * 1000))
    events = [_blob_created(perennial, name, f"evt-{i}-{copy}") for i, name in enumerate(names) for copy in range(4)]
    random.Random(7).shuffle(events)
    for start in range(0, len(events), 25):  # Event Grid delivers in batches, duplicates and all
        response = perennial.http.post(
            "/runtime/webhooks/eventgrid?functionName=on_blob_created",
            json=events[start : start + 25],
            headers={"aeg-event-type": "Notification"},
        )
        assert response.status_code in (200, 202), response.text
    run = perennial.wait_for("the storm's run", lambda: (perennial.finished_runs() or [None])[0], timeout=400)
    assert len(perennial.runs()) == 1, perennial.runs()
    detail = perennial.run(run["run_id"])
    claimed = sorted(b["url"].rsplit("/", 1)[-1] for b in detail["blobs"])
    assert claimed == names
    assert detail["version"]["data_files"] == 50


def test_manual_retrain_and_a_drift_alert_each_start_a_run_with_their_reason(perennial: PerennialHost) -> None:
    """A person's request always starts a run; a monitor's alert waits out the cool-down of the model's newest
    run (acknowledged with the reason, so nothing retries it), then retrains."""
    perennial.land("batch-001.csv", _csv(3000, seed=1))
    perennial.wait_for("the first run", lambda: (perennial.finished_runs() or [None])[0])

    accepted = perennial.http.post(
        "/api/models/fraud/retrain", json={"reason": "new fraud ring", "requested_by": "ana"}
    )
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    refused = perennial.http.post("/api/models/fraud/retrain", json={"reason": "again"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["run_id"] == run_id
    manual = perennial.wait_for(
        "the manual run", lambda: next((r for r in perennial.finished_runs() if r["run_id"] == run_id), None)
    )
    assert manual["trigger"]["kind"] == "manual"
    assert manual["trigger"]["reason"] == "new fraud ring"

    drift = {
        "id": "drift-evt-1",
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w",
        "subject": "datadrifts/fraud-monitor/runs/r1",
        "eventType": "Microsoft.MachineLearningServices.DatasetDriftDetected",
        "eventTime": "2026-11-22T10:00:00Z",
        "dataVersion": "2",
        "metadataVersion": "1",
        "data": {
            "DataDriftId": "d1",
            "DataDriftName": "fraud-monitor",
            "RunId": "r1",
            "BaseDatasetId": "b",
            "TargetDatasetId": "t",
            "DriftCoefficient": 0.83,
            "StartTime": "2026-11-21T00:00:00Z",
            "EndTime": "2026-11-22T00:00:00Z",
        },
    }

    def deliver(event_id: str) -> None:
        response = perennial.http.post(
            "/runtime/webhooks/eventgrid?functionName=on_alert_event",
            json=[{**drift, "id": event_id}],
            headers={"aeg-event-type": "Notification"},
        )
        assert response.status_code in (200, 202), response.text

    deliver("drift-evt-1")  # within a day of the manual run: suppressed, not queued
    assert perennial.runs()[0]["run_id"] == run_id, "the drift alert queued a run (runs are newest first)"
    host_log = (perennial.workdir / "host.log").read_text(errors="replace")
    assert (
        f"suppressed Microsoft.MachineLearningServices.DatasetDriftDetected for fraud (no run): run {run_id}"
        in host_log
    )
    alert = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": "/subscriptions/x/providers/Microsoft.AlertsManagement/alerts/eval-1",
                "alertRule": "fraud-latency-p95",
                "severity": "Sev3",
                "signalType": "Log",
                "monitorCondition": "Fired",
                "alertTargetIDs": [],
            }
        },
    }
    answer = perennial.http.post("/api/alerts/azure-monitor", json=alert)
    assert answer.status_code == 202, answer.text
    assert (answer.json()["action"], answer.json()["run_id"]) == ("suppressed", None)
    assert "cooling down until" in answer.json()["reason"]

    for run in perennial.runs():  # two days on (the registry stamps runs with the wall clock): it retrains
        perennial.registry.update_run(
            "fraud", run["run_id"], lambda r: replace(r, created_at=r.created_at - timedelta(days=2))
        )
    deliver("drift-evt-2")
    drifted = perennial.wait_for(
        "the drift run",
        lambda: next((r for r in perennial.finished_runs() if r["trigger"]["kind"] == "drift_alert"), None),
    )
    assert "drift coefficient 0.830" in drifted["trigger"]["reason"]
