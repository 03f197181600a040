"""The retraining loop end to end: blobs land → one run → candidates → evaluated → registered → shipped."""

from __future__ import annotations

import pytest

from perennial_cli.synthetic import fraud_batch
from tests.e2e.harness import PerennialHost

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.timeout(600)]


def _csv(rows: int, seed: int, start: int = 0, drift: float = 0.0) -> bytes:
    return fraud_batch(rows, seed=seed, drift=drift, start_id=start).to_csv(index=False).encode()


def test_first_blob_trains_registers_with_lineage_and_ships(perennial: PerennialHost) -> None:
    perennial.land("batch-001.csv", _csv(3000, seed=1))
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
    assert len(version["data_hashes"]) == 1
    assert all(len(h) == 64 for h in version["data_hashes"].values())
    assert version["params"]["lr"] in (0.003, 0.01)
    assert version["metrics"]["pr_auc"] > 0
    assert version["evaluation"]["champion"] is None
    assert version["code_version"]
    steps = [s["step"] for s in detail["rollout"]]
    assert steps[:2] == ["deploy", "smoke"]
    models = perennial.http.get("/api/models").json()["models"]
    assert models[0]["champion"]["version"] == version["version"]
