"""Regressions found while building `make demo`: what a run does when some of its blobs fail validation.

- ``triggers.on_validation_failure: stop_run`` was never read (the orchestrator looked for it in the
  trigger's details, where nothing put it), so such a run trained on the good blobs anyway.
- A run started by a blob that failed validation retrained on the rest of landing — exactly the data
  the champion was trained on — instead of stopping: there was nothing new to learn from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from perennial_cli.synthetic import fraud_batch
from tests.azurite import Azurite
from tests.e2e.harness import PerennialHost, fast_fraud_spec

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.timeout(600)]


def _corrupt(rows: int, seed: int, start: int) -> bytes:
    frame = fraud_batch(rows, seed=seed, start_id=start)
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[frame.index[::7], "amount"] = "n/a"
    return frame.to_csv(index=False).encode()


def _finished(host: PerennialHost, count: int) -> dict[str, object] | None:
    runs = host.finished_runs()
    return runs[0] if len(runs) >= count else None


@pytest.fixture
def stop_run_host(tmp_path: Path, fresh_azurite: Azurite) -> Iterator[PerennialHost]:
    fast_fraud_spec(tmp_path / "models", triggers__on_validation_failure="stop_run")
    host = PerennialHost(tmp_path, fresh_azurite.connection_string)
    host.start()
    try:
        yield host
    finally:
        host.stop()


def test_stop_run_stops_a_run_with_a_bad_blob_before_training(stop_run_host: PerennialHost) -> None:
    host = stop_run_host
    host.land("batch-001.csv", fraud_batch(2000, seed=1).to_csv(index=False).encode())
    host.land("batch-002-corrupt.csv", _corrupt(1000, seed=3, start=50_000))
    run = host.wait_for("the run", lambda: _finished(host, 1))
    detail = host.run(str(run["run_id"]))
    assert detail["status"] == "no_valid_data", detail["reasons"]
    assert detail["candidates"] == []
    assert any("batch-002-corrupt.csv" in reason for reason in detail["reasons"]), detail["reasons"]
    assert host.registry.champion("fraud") is None
    quarantined = [b.name for b in host.store.container("quarantine").list_blobs()]
    assert "fraud/batch-002-corrupt.csv" in quarantined


def test_a_run_whose_only_new_blob_is_corrupt_does_not_retrain_on_old_data(perennial: PerennialHost) -> None:
    perennial.land("batch-001.csv", fraud_batch(2000, seed=1).to_csv(index=False).encode())
    first = perennial.wait_for("the first run", lambda: _finished(perennial, 1))
    assert first["status"] == "promoted", perennial.run(str(first["run_id"]))["reasons"]
    champion = perennial.registry.champion("fraud")
    assert champion is not None

    perennial.land("batch-002-corrupt.csv", _corrupt(1000, seed=3, start=50_000))
    second = perennial.wait_for("the second run", lambda: _finished(perennial, 2))
    detail = perennial.run(str(second["run_id"]))
    assert detail["status"] == "no_valid_data", detail["reasons"]
    assert detail["candidates"] == []  # batch-001 alone was not trained again
    assert any("no new valid data" in reason for reason in detail["reasons"]), detail["reasons"]
    after = perennial.registry.champion("fraud")
    assert after is not None
    assert after.version == champion.version
