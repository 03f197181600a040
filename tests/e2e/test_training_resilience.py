"""Training that survives what a cluster does to it: the host dying mid-run, a node being preempted.

One host for the module, with training made slow enough (tens of seconds) to be interrupted.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from perennial_cli.main import app
from perennial_cli.synthetic import fraud_batch
from shared.platform import LogsRequest
from shared.platform.localstore import read_json
from tests.azurite import start_azurite
from tests.e2e.harness import KEY, PerennialHost, fast_fraud_spec

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PerennialHost]:
    workdir = tmp_path_factory.mktemp("resilience")
    azurite = start_azurite()
    fast_fraud_spec(
        workdir / "models",
        training__max_candidates=1,
        training__params={
            "epochs": 6,
            "batch_size": 64,
            "imbalance": "class-weight",
            "early-stopping-patience": 0,
            "checkpoint-every-steps": 50,
            "checkpoint-every-minutes": 0,
        },
    )
    perennial = PerennialHost(workdir, azurite.connection_string)
    perennial.start()
    try:
        yield perennial
    finally:
        perennial.stop()
        azurite.stop()


def _jobs_dir(host: PerennialHost) -> Path:
    return Path(host.platform().layout.jobs_dir)


def _job_names(host: PerennialHost, run_id: str) -> list[str]:
    folder = _jobs_dir(host)
    return (
        sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith(run_id)) if folder.exists() else []
    )


def _running_training_job(host: PerennialHost, checkpoints: bool = False) -> tuple[str, dict[str, Any]] | None:
    """The first training job that is Running (and, if asked, has written a checkpoint)."""
    folder = _jobs_dir(host)
    if not folder.exists():
        return None
    for job in sorted(folder.iterdir()):
        if not job.is_dir():
            continue  # runners' lock files live beside the job folders
        state = read_json(job / "state.json") or {}
        if "-c" not in job.name or state.get("status") != "Running" or not state.get("child_pids"):
            continue
        if checkpoints and not list((job / "outputs" / "artifacts" / "checkpoints").glob("ckpt-*.pt")):
            continue
        return job.name, state
    return None


def _finished_run(host: PerennialHost, run_id: str) -> dict[str, Any] | None:
    detail = host.run(run_id)
    return detail if detail["status"] not in ("pending", "running") else None


def _job_shown_running(host: PerennialHost, run_id: str) -> dict[str, Any] | None:
    jobs = host.run(run_id)["jobs"]
    return jobs[0] if jobs and jobs[0]["phase"] == "running" else None


def test_a_host_killed_during_training_completes_the_run_without_duplicate_jobs(host: PerennialHost) -> None:
    host.land("batch-001.csv", fraud_batch(12_000, seed=1).to_csv(index=False).encode())
    job, _ = host.wait_for("a training job to run", lambda: _running_training_job(host))
    run_id = job.rsplit("-c", 1)[0]
    host.kill()  # SIGKILL: no shutdown code runs; the job keeps running on its "cluster"
    time.sleep(1)
    host.start()

    detail = host.wait_for("the run to finish after the restart", lambda: _finished_run(host, run_id), timeout=400)
    assert detail["status"] == "promoted", detail["reasons"]
    # One job per logical job: the training candidate and the evaluation, each submitted once.
    assert _job_names(host, run_id) == [f"{run_id}-c0-a0", f"{run_id}-eval-a0"]


def test_a_preempted_training_job_resumes_from_its_checkpoint(host: PerennialHost) -> None:
    accepted = host.http.post("/api/models/fraud/retrain", json={"reason": "preemption test"})
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    job, state = host.wait_for(
        "a training job with a checkpoint", lambda: _running_training_job(host, checkpoints=True), advance=15
    )
    assert job == f"{run_id}-c0-a0"
    # While it trains, the run shows its job: running since a poll saw it, cancelled training.timeout_minutes (a
    # week in fast_fraud_spec) after that unless it ends; `perennial run` prints the same.
    shown = host.wait_for("the run to show its job running", lambda: _job_shown_running(host, run_id), advance=15)
    assert shown["job"] == f"{run_id}-c0-a0"
    assert shown["waiting_since"] is None
    running_since = datetime.fromisoformat(shown["running_since"])
    assert datetime.fromisoformat(shown["deadline"]) - running_since == timedelta(minutes=10080)
    env = {"PERENNIAL_HOST_URL": host.base_url, "PERENNIAL_FUNCTION_KEY": KEY, "COLUMNS": "200"}
    printed = CliRunner().invoke(app, ["run", run_id], env=env)
    assert printed.exit_code == 0, printed.output
    assert "Jobs now" in printed.output
    assert f"running since {running_since.strftime('%Y-%m-%d %H:%M:%S')}" in printed.output
    for pid in state["child_pids"]:  # low-priority VM eviction: the node gets SIGTERM
        os.kill(int(pid), signal.SIGTERM)

    detail = host.wait_for("the run to finish", lambda: _finished_run(host, run_id), timeout=400)
    assert detail["status"] in ("promoted", "not_promoted"), detail["reasons"]
    assert _job_names(host, run_id) == [f"{run_id}-c0-a0", f"{run_id}-c0-a1", f"{run_id}-eval-a0"]
    first = read_json(_jobs_dir(host) / f"{run_id}-c0-a0" / "state.json") or {}
    assert first.get("preempted") is True, first
    logs = host.platform().job_logs(LogsRequest(job_name=f"{run_id}-c0-a1", tail_lines=None))
    assert "resumed from" in logs, logs[-2000:]
    candidate = detail["candidates"][0]
    assert candidate["job_name"] == f"{run_id}-c0-a1"
    assert detail["jobs"] == [], "an ended run has no jobs to watch"
    assert candidate["status"] == "completed"
