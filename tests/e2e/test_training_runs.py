"""Runs that do not go the easy way: a corrupt blob among good ones, and a challenger that is worse.

One host for the module (devhost + local Event Grid + Azurite + subprocess training, virtual clock).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import numpy as np
import pytest

from perennial_cli.synthetic import fraud_batch
from tests.azurite import start_azurite
from tests.e2e.harness import PerennialHost, fast_fraud_spec

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PerennialHost]:
    workdir = tmp_path_factory.mktemp("runs")
    azurite = start_azurite()
    fast_fraud_spec(workdir / "models")
    perennial = PerennialHost(workdir, azurite.connection_string)
    perennial.start()
    try:
        yield perennial
    finally:
        perennial.stop()
        azurite.stop()


def _finished(host: PerennialHost, count: int) -> dict[str, object] | None:
    runs = host.finished_runs()
    return runs[0] if len(runs) >= count else None


def test_a_corrupt_blob_is_quarantined_and_the_run_trains_on_the_good_ones(host: PerennialHost) -> None:
    corrupt = fraud_batch(1500, seed=3, start_id=50_000)
    corrupt["amount"] = corrupt["amount"].astype(object)
    corrupt.loc[corrupt.index[::7], "amount"] = "n/a"  # a broken export: text in a numeric column
    host.land("batch-001.csv", fraud_batch(3000, seed=1).to_csv(index=False).encode())
    host.land("batch-002-corrupt.csv", corrupt.to_csv(index=False).encode())

    run = host.wait_for("the run", lambda: _finished(host, 1))
    detail = host.run(str(run["run_id"]))
    assert detail["status"] == "promoted", detail["reasons"]
    assert sorted(b["url"].rsplit("/", 1)[-1] for b in detail["blobs"]) == ["batch-001.csv", "batch-002-corrupt.csv"]
    # It trained on the good blob only, and the corrupt one left landing for quarantine, report beside it.
    stored = host.store.stored_manifest("fraud", str(run["run_id"]))
    assert [e.name for e in stored.manifest.blobs] == ["fraud/batch-001.csv"]
    assert detail["version"]["manifest_sha256"] == stored.sha256, "the version pins the manifest it trained on"
    assert detail["version"]["data_files"] == 1
    landing = [b.name for b in host.store.container("landing").list_blobs()]
    assert landing == ["fraud/batch-001.csv"]
    quarantined = sorted(b.name for b in host.store.container("quarantine").list_blobs())
    assert quarantined[0] == "fraud/batch-002-corrupt.csv", quarantined
    report_name = next(name for name in quarantined if name.endswith(".json"))
    report = json.loads(host.store.container("quarantine").download_blob(report_name).readall())
    assert report["ok"] is False
    assert any(f.get("column") == "amount" for f in report["findings"]), report["findings"]


def test_a_worse_challenger_is_not_promoted_and_the_run_says_why(host: PerennialHost) -> None:
    champion = host.registry.champion("fraud")
    assert champion is not None, "the first test ships the champion"
    # A feed whose labels were mangled upstream: the same transactions, labels shuffled (no signal left).
    noisy = fraud_batch(9000, seed=4, start_id=100_000)
    noisy["is_fraud"] = np.random.default_rng(4).permutation(noisy["is_fraud"].to_numpy())
    host.land("batch-003-mislabelled.csv", noisy.to_csv(index=False).encode())

    run = host.wait_for("the second run", lambda: _finished(host, 2))
    detail = host.run(str(run["run_id"]))
    assert detail["status"] == "not_promoted", detail["reasons"]
    assert detail["decision"] == "reject"
    reasons = " ".join(detail["reasons"])
    assert "pr_auc" in reasons
    assert re.search(r"\d\.\d{4}", reasons), reasons  # the numbers behind the decision
    after = host.registry.champion("fraud")
    assert after is not None
    assert after.version == champion.version
    assert detail["rollout"] == []  # nothing was deployed


def test_a_blob_landing_during_a_debounced_run_is_not_lost(host: PerennialHost) -> None:
    """A run started by blobs waited out a quiet window; its coordinator's wait for more work must not be
    left open to swallow the next blob, which would then never train."""
    host.land("batch-005.csv", fraud_batch(2000, seed=6, start_id=300_000).to_csv(index=False).encode())

    def training() -> dict[str, object] | None:
        run = next((r for r in host.runs() if "batch-005.csv" in r["trigger"]["reason"]), None)
        return run if run is not None and run["stage"] == "training" else None

    first = host.wait_for("the debounced run to be training", training)
    host.land("batch-006.csv", fraud_batch(2000, seed=7, start_id=400_000).to_csv(index=False).encode())
    host.wait_for("that run", lambda: host.run(str(first["run_id"]))["status"] not in ("pending", "running") or None)
    follow_up = host.wait_for(
        "the next run, for the blob that landed meanwhile",
        lambda: next((r for r in host.finished_runs() if "batch-006.csv" in r["trigger"]["reason"]), None),
    )
    claimed = [b["url"].rsplit("/", 1)[-1] for b in host.run(str(follow_up["run_id"]))["blobs"]]
    assert claimed == ["batch-006.csv"]


def test_a_blob_landing_during_a_run_trains_in_the_next_run(host: PerennialHost) -> None:
    accepted = host.http.post("/api/models/fraud/retrain", json={"reason": "weekly refresh"})
    assert accepted.status_code == 202, accepted.text
    first = accepted.json()["run_id"]
    host.wait_for("the retrain to be training", lambda: host.run(first)["stage"] == "training" or None, advance=0)

    def jobs_shown() -> list[dict[str, object]] | None:
        detail = host.run(first)  # the clock stands still: the jobs' first status poll has not come
        candidates = detail["candidates"]
        return candidates if detail["stage"] == "training" and all(c["job_name"] for c in candidates) else None

    training = host.wait_for("each candidate to show its job while it trains", jobs_shown, advance=0)
    assert {c["status"] for c in training} == {"submitted"}, training
    host.land("batch-004.csv", fraud_batch(2000, seed=5, start_id=200_000).to_csv(index=False).encode())

    host.wait_for("the retrain", lambda: host.run(first)["status"] not in ("pending", "running") or None)
    follow_up = host.wait_for(
        "the next run, for the blob that landed meanwhile",
        lambda: next((r for r in host.finished_runs() if r["trigger"]["kind"] == "blob_created"
                      and "batch-004.csv" in r["trigger"]["reason"]), None),
    )  # fmt: skip
    assert follow_up["run_id"] != first
    claimed = [b["url"].rsplit("/", 1)[-1] for b in host.run(follow_up["run_id"])["blobs"]]
    assert claimed == ["batch-004.csv"]


def test_an_abort_while_the_candidates_train_is_recorded_as_aborted(host: PerennialHost) -> None:
    accepted = host.http.post("/api/models/fraud/retrain", json={"reason": "abort test"})
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]

    def jobs_submitted() -> bool:
        detail = host.run(run_id)
        return detail["stage"] == "training" and all(c["job_name"] for c in detail["candidates"])

    host.wait_for("the candidates' jobs", jobs_submitted, advance=0)
    first = host.http.post(f"/api/runs/{run_id}/abort", json={"by": "dana", "reason": "exported twice"})
    assert first.status_code == 202, first.text
    again = host.http.post(f"/api/runs/{run_id}/abort", json={"by": "eve"})  # a repeat does not rewrite who asked
    assert again.status_code in (202, 409), again.text
    detail = host.wait_for("the abort", lambda: (d := host.run(run_id))["status"] not in ("pending", "running") and d)
    assert detail["status"] == "aborted", (detail["status"], detail["reasons"])
    assert detail["reasons"] == ["aborted on request by dana (exported twice)"]
    assert detail["abort"]["by"] == "dana", detail["abort"]
    platform = host.platform()
    phases = {c["job_name"]: platform.get_job(c["job_name"]).phase for c in detail["candidates"]}
    assert set(phases.values()) <= {"canceled", "completed"}, f"no job left training: {phases}"


def test_an_accepted_retrain_whose_event_was_lost_still_runs(host: PerennialHost) -> None:
    """In Azure a Python coordinator's continue_as_new drops events it had not consumed; an accepted
    request must not wait for ever (and block the model with 409s): the coordinator finds its record."""
    from shared.registry import Run

    run_id = "fraud-00000000000000f1"
    trigger = {"kind": "manual", "reason": "lost event test", "source_event_id": run_id, "details": {}}
    work = {"kind": "retrain", "run_id": run_id, "trigger": trigger}
    host.registry.create_run(
        Run(
            "fraud",
            run_id,
            "manual",
            "lost event test",
            run_id,
            status="pending",
            stage="queued",
            details={"work": work},
        )
    )  # accepted as the API accepts a retrain, but no event reaches the coordinator
    # Any later work wakes the coordinator; once that run is over it looks for accepted requests.
    host.land("batch-007.csv", fraud_batch(2000, seed=8, start_id=500_000).to_csv(index=False).encode())
    detail = host.wait_for(
        "the accepted retrain", lambda: (d := host.run(run_id))["status"] not in ("pending", "running") and d
    )
    assert detail["status"] in ("promoted", "not_promoted"), (detail["status"], detail["reasons"])
    assert detail["trigger"]["reason"] == "lost event test"
